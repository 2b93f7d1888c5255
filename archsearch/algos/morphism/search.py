"""The search loop: propose, train through a callback, record, repeat; resumable from its own files.

Files under ``out_dir``::

    trials/trial_003.json   the architecture (NNI JSON, written before training, "weighted": false so
                            NNI's own loader takes it too)
    trials/trial_003.pt     the trained weights as a TorchModel state dict, when the callback put them in
                            the graph (``graph.set_weights_from_model(model)``); children inherit them
    trials/trials.yaml      the index: one record per trial (id, father, status, metric, files, params, time,
                            and the strategy's generator state after it, so a resume proposes what the
                            uninterrupted search would)
    best_model.json/.txt    the best trial's architecture and "best model: <id>" (NNI's best_model.txt line),
    best_model.pt           and its weights when it has them
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from archsearch.algos.morphism.graph import Graph
from archsearch.algos.morphism.ir_json import graph_to_json, json_to_graph
from archsearch.algos.morphism.strategy import MorphismSearchStrategy, SearchExhausted
from archsearch.common.checkpoint import fault_point, load_checkpoint, save_checkpoint
from archsearch.common.errors import UserError
from archsearch.common.io import atomic_write_text, atomic_write_yaml

MAX_CONSECUTIVE_FAILURES = 3  # a callback that keeps raising is a bug, not a bad architecture


@dataclass
class SearchResult:
    best_trial_id: int | None
    best_metric: float | None
    n_finished: int
    out_dir: Path
    records: list[dict[str, Any]]


def _trial_stem(trial_id: int) -> str:
    return f"trial_{trial_id:03d}"


def _read_index(index_path: Path) -> list[dict[str, Any]]:
    if not index_path.exists():
        return []
    try:
        records = yaml.safe_load(index_path.read_text()) or []
    except yaml.YAMLError as err:
        raise UserError(
            f"{index_path}: not valid YAML ({str(err).splitlines()[0]}); fix or delete it to start the search afresh"
        ) from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "trial_id" in r for r in records):
        raise UserError(f"{index_path}: expected a list of trial records with trial_id; fix or delete it")
    return records


def _resume(
    strategy: MorphismSearchStrategy, trials_dir: Path, records: list[dict[str, Any]], logger: Callable[[str], Any]
) -> list[dict[str, Any]]:
    """Re-register finished trials in id order; trials interrupted mid-training are dropped and redone."""
    kept = []
    for record in sorted(records, key=lambda r: r["trial_id"]):
        if record.get("status") not in ("done", "failed"):
            logger(f"morphism: dropping trial {record['trial_id']} interrupted while {record.get('status')}")
            continue
        graph = json_to_graph((trials_dir / record["json"]).read_text())
        if record.get("weights"):
            graph.set_weights_from_state_dict(load_checkpoint(trials_dir / record["weights"], require_checksum=True))
        metric = record.get("metric") if record["status"] == "done" else None
        strategy.restore(record["trial_id"], graph, record["father_id"], metric)
        kept.append(record)
    if kept:
        if kept[-1].get("rng") is not None:  # the generator as it was after the last finished trial
            strategy.set_rng_state(kept[-1]["rng"])
        logger(f"morphism: resumed {len(kept)} finished trials from {trials_dir}")
    return kept


def _write_best(
    strategy: MorphismSearchStrategy, out_dir: Path, trials_dir: Path, records: list[dict[str, Any]]
) -> None:
    best = strategy.best_trial
    if best is None:
        return
    record = next(r for r in records if r["trial_id"] == best.trial_id)
    atomic_write_text(out_dir / "best_model.json", (trials_dir / record["json"]).read_text())
    lines = [f"best model: {best.trial_id}", f"metric: {best.metric}", f"json: trials/{record['json']}"]
    if record.get("weights"):
        save_checkpoint(best.graph.weights_state_dict(), out_dir / "best_model.pt")
        lines.append(f"weights: trials/{record['weights']}")
    atomic_write_text(out_dir / "best_model.txt", "\n".join(lines) + "\n")


def run_morphism_search(
    strategy: MorphismSearchStrategy,
    train_and_score: Callable[[Graph, int], float],
    n_trials: int,
    time_budget_s: float | None = None,
    out_dir: str | Path = ".",
    logger: Callable[[str], Any] = print,
) -> SearchResult:
    """Run until ``n_trials`` trials have finished (counting resumed ones) or ``time_budget_s`` is spent.

    ``train_and_score(graph, trial_id)`` builds ``graph.produce_torch_model()`` (which already carries any
    inherited weights), trains it, and returns the metric (higher is better for optimize_mode maximize).
    To let children inherit the trained weights it calls ``graph.set_weights_from_model(model)``.
    A callback exception marks the trial failed; three in a row re-raise the last one.
    """
    out_dir = Path(out_dir)
    trials_dir = out_dir / "trials"
    index_path = trials_dir / "trials.yaml"
    trials_dir.mkdir(parents=True, exist_ok=True)
    records = _resume(strategy, trials_dir, _read_index(index_path), logger)
    start, failures_in_a_row = time.monotonic(), 0

    while len(records) < n_trials:
        if time_budget_s is not None and time.monotonic() - start >= time_budget_s:
            logger(f"morphism: time budget of {time_budget_s:g}s spent after {len(records)} trials")
            break
        try:
            trial_id, graph, father_id = strategy.propose()
        except SearchExhausted as err:
            logger(f"morphism: stopping: {err}")
            break
        stem = _trial_stem(trial_id)
        graph_to_json(graph, trials_dir / f"{stem}.json", include_weights=False)
        record: dict[str, Any] = {
            "trial_id": trial_id,
            "father_id": father_id,
            "status": "running",
            "metric": None,
            "json": f"{stem}.json",
            "weights": None,
            "n_params": graph.size(),
            "inherited_weights": graph.has_weights(),
            "seconds": None,
            "rng": None,
        }
        atomic_write_yaml(index_path, records + [record])
        began = time.monotonic()
        try:
            metric: float | None = float(train_and_score(graph, trial_id))
            failures_in_a_row = 0
        except Exception as err:  # a bad architecture must not end the search; a broken callback will
            failures_in_a_row += 1
            logger(f"morphism: trial {trial_id} failed: {type(err).__name__}: {err}")
            if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
                record.update(status="failed", seconds=round(time.monotonic() - began, 3), rng=strategy.rng_state())
                atomic_write_yaml(index_path, records + [record])
                raise
            metric = None
        if metric is not None and not math.isfinite(metric):
            metric = None
        strategy.report(trial_id, metric)
        if graph.has_weights():
            save_checkpoint(graph.weights_state_dict(), trials_dir / f"{stem}.pt")
            record["weights"] = f"{stem}.pt"
        record.update(
            status="done" if metric is not None else "failed",
            metric=metric,
            seconds=round(time.monotonic() - began, 3),
            rng=strategy.rng_state(),  # a resume continues the proposals from here (bit generator state)
        )
        records.append(record)
        atomic_write_yaml(index_path, records)
        fault_point(f"morphism:recorded:{trial_id}")
        _write_best(strategy, out_dir, trials_dir, records)
        best = strategy.best_trial
        logger(
            f"morphism: trial {trial_id} (father {father_id}, {record['n_params']} params) "
            f"metric={metric} in {record['seconds']}s; best trial "
            f"{best.trial_id if best else None} ({best.metric if best else None})"
        )

    best = strategy.best_trial
    return SearchResult(best.trial_id if best else None, best.metric if best else None, len(records), out_dir, records)
