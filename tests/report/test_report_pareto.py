"""The report of a multi-objective search (issue 21): the "Pareto front" section (the front table with each
member's architecture file linked inside the run folder, every trial in objective space, the hypervolume per
trial), the comparison page overlaying the fronts of runs with the same two first objectives, and the cost
term's predicted cost of a DARTS search; a hostile search/pareto.yaml is one ReportError line naming the file
and the key; the pages open in headless chromium without console errors.

Three tiny real runs per module: random search with two objectives and two constraints, the same with three
objectives, and DARTS with the params cost term."""

from __future__ import annotations

import os
import shutil
import urllib.parse
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archsearch.common.errors import UserError
from archsearch.report.html import write_comparison, write_report
from tests.report.conftest import mutate
from tests.report.test_report import browser, check_images, open_page  # noqa: F401 - the module's chromium
from tests.report.test_report_hostile import assert_urls_stay_inside
from tests.report.toy_runs import MULTI_OBJECTIVE, toy_run

FAST = {"report.auto": False}
THREE = {
    **MULTI_OBJECTIVE,
    "nas.search.objectives": [
        {"metric": "benchmark_top1", "goal": "max"},
        {"metric": "params", "goal": "min"},
        {"metric": "macs", "goal": "min"},
    ],
    "nas.search.constraints": {"benchmark_top1": {"min": 0.7}},
}
COST = {"nas.search.trainer.epochs": 2, "nas.search.trainer.cost.source": "params"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    logdir = tmp_path_factory.mktemp("pareto_runs")
    return {
        "two": toy_run("p_two", "random", "nasbench201", {**MULTI_OBJECTIVE, **FAST}, logdir),
        "three": toy_run("p_three", "random", "nasbench201", {**THREE, **FAST}, logdir),
        "cost": toy_run("p_cost", "darts", "darts", {**COST, **FAST}, logdir),
    }


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    artifacts = os.environ.get("ARCHSEARCH_TEST_ARTIFACTS")
    folder = Path(artifacts) / "report_screenshots" if artifacts else tmp_path_factory.mktemp("pareto_shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def copy_run(runs: dict[str, Path], dest: Path, kind: str = "two") -> Path:
    shutil.copytree(runs[kind], dest, ignore=shutil.ignore_patterns("tb", "*.pt", "*.sha256", "report.html"))
    return dest


def report(folder: Path, out: Path | None = None) -> Path:
    return write_report(folder, out, latency=False)


def pareto_of(folder: Path) -> dict:
    return yaml.safe_load((folder / "search" / "pareto.yaml").read_text())


def trials_of(folder: Path) -> list[dict]:
    return yaml.safe_load((folder / "search" / "trials.yaml").read_text())


# ---- what the page shows ---------------------------------------------------------------------------


def test_the_run_has_what_the_views_need(runs):
    """The toy search exercises every mark: a front, the selected member, infeasible trials, rejections."""
    pareto, trials = pareto_of(runs["two"]), trials_of(runs["two"])
    assert pareto["front"] and pareto["selected"] in [m["index"] for m in pareto["front"]]
    assert any(not t["feasible"] for t in trials) and pareto["rejected"] > 0
    assert all(m["arch_file"].startswith("search/pareto/") for m in pareto["front"])
    curve = [v for _, v in pareto["hypervolume_curve"]]  # one per trial, against the final reference
    assert len(curve) == len(trials) and curve == sorted(curve) and curve[-1] == pytest.approx(pareto["hypervolume"])


def test_the_pareto_page_in_the_headless_browser(runs, browser, shots):  # noqa: F811 - the imported fixture
    folder = runs["two"]
    page_path = report(folder)
    page, errors = open_page(browser, page_path, shots / "pareto.png")
    assert not errors, errors
    assert check_images(page) >= 5  # architecture, curves, trials, the front in objective space, hypervolume
    pareto, trials = pareto_of(folder), trials_of(folder)
    cell = lambda label: page.locator(f'#summary td[data-key="{label}"]').inner_text()  # noqa: E731
    assert cell("objectives") == "benchmark_top1 (max), params (min)"
    assert sorted(cell("constraints").split(", ")) == ["benchmark_top1 \u2265 0.7", "params \u2264 10000"]
    assert cell("Pareto front").startswith(f"{len(pareto['front'])} feasible trials, hypervolume ")
    assert cell("infeasible trials") == f"{sum(not t['feasible'] for t in trials)} of {len(trials)}"
    assert cell("rejected proposals").startswith(f"{pareto['rejected']} ")
    selected = next(m for m in pareto["front"] if m["index"] == pareto["selected"])
    assert cell("selected from the front").startswith(f"trial {selected['index']} (rule best): benchmark_top1 ")
    # the front table: one row per member, in the file's order, the selected one marked
    rows = page.locator("#pareto-front tr[data-index]")
    assert rows.count() == len(pareto["front"])
    header = page.locator("#pareto-front tr").first.inner_text().split("\t")
    assert header[:4] == ["index", "architecture", "benchmark_top1", "params"], header
    for i, member in enumerate(pareto["front"]):
        cells = rows.nth(i).locator("td").all_inner_texts()
        assert cells[0].split()[0] == str(member["index"])
        assert cells[1] == member["arch"]
        metrics = member["metrics"]
        assert cells[2:4] == [f"{metrics['benchmark_top1']:.6g}", f"{metrics['params']:.6g}"], cells
        assert ("(selected)" in cells[0]) == (member["index"] == pareto["selected"])
        # the member's architecture file, a relative link inside the run folder that opens
        href = rows.nth(i).locator("a").get_attribute("href")
        assert href == urllib.parse.quote(member["arch_file"]) and not href.startswith(("/", "file:"))
        target = (page_path.parent / urllib.parse.unquote(href)).resolve()
        assert target.is_file() and target.is_relative_to(folder.resolve())
        assert yaml.safe_load(target.read_text())["meta"]["trial"] == member["index"]
    assert page.locator("#pareto-front tr.selected").count() == 1
    body = page.locator("body").inner_text()
    assert "every trial in objective space" in body and "hypervolume against trials" in body
    page.close()
    assert len(assert_urls_stay_inside(page_path)) == len(pareto["front"])


def test_three_objectives_draw_the_first_against_each_other(runs, browser, shots):  # noqa: F811
    page_path = report(runs["three"])
    page, errors = open_page(browser, page_path, shots / "pareto_three.png")
    assert not errors, errors
    header = page.locator("#pareto-front tr").first.inner_text().split("\t")
    assert header[2:5] == ["benchmark_top1", "params", "macs"], header
    sizes = page.evaluate("Array.from(document.images).map(i => [i.alt, i.naturalWidth, i.naturalHeight])")
    [(_, width, height)] = [s for s in sizes if s[0] == "every trial in objective space"]
    assert width > 2.5 * height  # two panels side by side: the first objective against params, against macs
    assert "the first against each other one" in page.locator("body").inner_text()
    page.close()


def test_the_comparison_page_overlays_fronts_with_the_same_first_objectives(runs, browser, shots, tmp_path):  # noqa: F811
    out = write_comparison([runs["two"], runs["three"], runs["cost"]], tmp_path / "cmp.html", latency=False)
    page, errors = open_page(browser, out, shots / "pareto_comparison.png")
    assert not errors, errors
    fronts = page.locator("#fronts")
    assert fronts.locator("img").count() == 1  # both searches rank benchmark_top1 (max) then params (min)
    text = fronts.inner_text()
    assert "benchmark_top1 (max) against params (min)" in text
    for kind in ("two", "three"):
        assert f"{runs[kind].parent.name}/{runs[kind].name}" in text
    assert f"no front of two or more objectives: {runs['cost'].parent.name}/{runs['cost'].name}" in text
    page.close()


def test_runs_with_other_objectives_get_a_figure_each(runs, tmp_path):
    other = copy_run(runs, tmp_path / "other")
    pareto = pareto_of(other)
    pareto["objectives"] = list(reversed(pareto["objectives"]))
    (other / "search" / "pareto.yaml").write_text(yaml.safe_dump(pareto))
    page = write_comparison([runs["two"], other], tmp_path / "cmp.html", latency=False).read_text()
    assert page.count('alt="Pareto fronts of 1 runs: ') == 2
    assert "no front of two or more objectives" not in page


def test_the_cost_term_is_in_the_summary_and_drawn_per_epoch(runs, browser, shots):  # noqa: F811
    folder = runs["cost"]
    search = yaml.safe_load((folder / "summary.yaml").read_text())["search"]
    page, errors = open_page(browser, report(folder), shots / "cost.png")
    assert not errors, errors
    cell = lambda label: page.locator(f'#summary td[data-key="{label}"]').inner_text()  # noqa: E731
    assert cell("predicted cost of the derived architecture") == (
        f"{search['arch_cost']:.6g} M params (cost source params)"
    )
    assert cell("expected cost under the architecture weights").startswith(f"{search['expected_cost']:.6g} M params")
    assert "Predicted cost" in page.locator("body").inner_text()
    assert page.locator('img[alt="expected cost and the derived architecture\'s cost per epoch"]').count() == 1
    page.close()


def test_a_cost_search_without_cost_records_draws_the_epochs_metrics(runs, tmp_path):
    folder = copy_run(runs, tmp_path / "run", "cost")
    events = yaml.safe_load((folder / "log.yaml").read_text())
    (folder / "log.yaml").write_text(yaml.safe_dump([e for e in events if e["event"] != "cost"]))
    page = report(folder).read_text()
    assert "Predicted cost" in page and 'data-key="predicted cost of the derived architecture">0.00' in page


def test_a_single_objective_run_has_no_pareto_section(runs, tmp_path):
    folder = copy_run(runs, tmp_path / "run")
    (folder / "search" / "pareto.yaml").unlink()
    page = report(folder).read_text()
    assert "Pareto front" not in page and 'data-key="objectives"' not in page


# ---- hostile values ----------------------------------------------------------------------------------


def spoil(folder: Path, change) -> Path:
    path = folder / "search" / "pareto.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc))
    return folder


def _set(*keys, value):
    def change(doc):
        target = doc
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


def _drop(*keys):
    def change(doc):
        target = doc
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return change


SPOILED = [
    (_set("objectives", value="accuracy"), "objectives must be a list"),
    (_set("objectives", value=[]), "objectives must be a list of at least one"),
    (_set("objectives", 0, "goal", value="up"), "objectives[0].goal must be max or min"),
    (_set("objectives", 1, "metric", value=7), "objectives[1].metric must be a string"),
    (_set("constraints", value=[1]), "constraints must be a mapping"),
    (_set("constraints", "params", "max", value="big"), "constraints.params.max must be a number"),
    (_set("constraints", "params", "max", value=float("inf")), "constraints.params.max must be a finite number"),
    (_set("constraints", "params", value={"below": 3}), "constraints.params key must be min or max"),
    (_set("reference_point", value=[0.5, "x"]), "reference_point[1] must be a number"),
    (_set("hypervolume", value="lots"), "hypervolume must be a number"),
    (_set("hypervolume_curve", value=3), "hypervolume_curve must be a list"),
    (_set("hypervolume_curve", 0, value=[1]), "hypervolume_curve[0] must be a pair"),
    (_set("hypervolume_curve", 0, 1, value="up"), "hypervolume_curve[0][1] must be a number"),
    (_set("rejected", value=1.5), "rejected must be a whole number"),
    (_set("front", value={"a": 1}), "front must be a list"),
    (_set("front", 0, value=3), "front[0] must be a mapping"),
    (_drop("front", 0, "index"), "front[0] has no index"),
    (_set("front", 0, "index", value=True), "front[0].index must be a whole number"),
    (_set("front", 0, "metrics", value=[1]), "front[0].metrics must be a mapping"),
    (_set("front", 0, "metrics", "params", value="many"), "front[0].metrics.params must be a number"),
    (_set("front", 0, "arch", value=b"\x00"), "front[0].arch must be an architecture encoding"),
    (_set("front", 0, "arch_file", value="../../../../etc/hostname"), "front[0].arch_file '../../../../etc"),
    (_set("front", 0, "arch_file", value="/etc/hostname"), "leaves the run folder"),
    (_set("front", 0, "arch_file", value=5), "front[0].arch_file must be a string"),
    (_set("selected", value=10**6), "selected 1000000 is not the index of a front member"),
    (_set("selected", value="best"), "selected must be a whole number"),
    (_set("rule", value=["best"]), "rule must be a string"),
]


@pytest.mark.parametrize(("change", "fragment"), SPOILED, ids=[f for _, f in SPOILED])
def test_a_hostile_pareto_file_is_one_line_naming_file_and_key(runs, tmp_path, change, fragment):
    folder = spoil(copy_run(runs, tmp_path / "run"), change)
    with pytest.raises(UserError) as caught:
        report(folder)
    message = str(caught.value)
    assert "\n" not in message and str(folder / "search" / "pareto.yaml") in message, message
    assert fragment in message, (fragment, message)


@pytest.mark.parametrize(
    ("file", "change", "fragment"),
    [
        ("search/trials.yaml", lambda t: t[0].update(feasible="yes"), "trial 0.feasible must be true or false"),
        ("search/trials.yaml", lambda t: t[1].update(hypervolume=[1]), "trial 1.hypervolume must be a number"),
        ("search/trials.yaml", lambda t: t[2].update(rejected=0.5), "trial 2.rejected must be a whole number"),
        ("summary.yaml", lambda s: s["search"].update(n_rejected="some"), "search.n_rejected must be a whole"),
        ("summary.yaml", lambda s: s["search"].update(selected_metrics=[1]), "search.selected_metrics must be a map"),
        ("summary.yaml", lambda s: s["search"].update(arch_cost="cheap"), "search.arch_cost must be a number"),
    ],
)
def test_hostile_trial_and_summary_fields_are_one_line(runs, tmp_path, file, change, fragment):
    folder = copy_run(runs, tmp_path / "run")
    data = yaml.safe_load((folder / file).read_text())
    change(data)
    (folder / file).write_text(yaml.safe_dump(data))
    with pytest.raises(UserError) as caught:
        report(folder)
    message = str(caught.value)
    assert "\n" not in message and str(folder / file) in message and fragment in message, message


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [("expected", "x", ".expected must be a number"), ("unit", [1], ".unit must be a string")],
)
def test_a_hostile_cost_record_is_one_line(runs, tmp_path, key, value, fragment):
    folder = copy_run(runs, tmp_path / "run", "cost")
    events = yaml.safe_load((folder / "log.yaml").read_text())
    next(e for e in events if e["event"] == "cost")[key] = value
    (folder / "log.yaml").write_text(yaml.safe_dump(events))
    with pytest.raises(UserError) as caught:
        report(folder)
    message = str(caught.value)
    assert "\n" not in message and str(folder / "log.yaml") in message and fragment in message, message


def test_names_and_architectures_from_the_file_are_escaped(runs, tmp_path):
    def change(doc):
        doc["front"][0]["arch"] = "<script>alert(1)</script>"
        doc["front"][0]["metrics"]['"><img src=x onerror=alert(1)>'] = 1.0
        doc["rule"] = "<b>knee</b>"
        doc["objectives"][0]["metric"] = "<i>acc</i>"

    page = report(spoil(copy_run(runs, tmp_path / "run"), change)).read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "<b>knee" not in page and "<i>acc" not in page
    assert_urls_stay_inside(tmp_path / "run" / "report.html")


def test_a_non_finite_metric_is_not_recorded_and_a_missing_file_is_not_linked(runs, tmp_path):
    folder = copy_run(runs, tmp_path / "run")
    pareto = pareto_of(folder)
    first = pareto["front"][0]
    spoil(folder, _set("front", 0, "metrics", "params", value=float("nan")))
    (folder / first["arch_file"]).unlink()
    page = report(folder)
    text = page.read_text()
    row = text[text.index(f'data-index="{first["index"]}"') :].split("</tr>")[0]
    assert "<td>-</td>" in row and "<a " not in row and "<code>-</code>" in row
    assert_urls_stay_inside(page)


def test_a_symlinked_member_file_leading_out_is_refused(runs, tmp_path):
    folder = copy_run(runs, tmp_path / "run")
    outside = tmp_path / "secret.yaml"
    outside.write_text("secret: 1\n")
    member = folder / pareto_of(folder)["front"][0]["arch_file"]
    member.unlink()
    member.symlink_to(outside)
    with pytest.raises(UserError, match="leaves the run folder"):
        report(folder)


def test_a_page_written_outside_the_run_names_member_files_without_links(runs, tmp_path):
    out = report(runs["two"], tmp_path / "elsewhere" / "page.html")
    assert assert_urls_stay_inside(out) == []
    assert "search/pareto/trial_" in out.read_text()


# ---- fuzz: a page or one line, whatever pareto.yaml holds -----------------------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=10),
    st.sampled_from(["max", "min", "../../x", "/etc/hostname", "<script>", "search/pareto"]),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
KEYS = ["objectives", "constraints", "reference_point", "hypervolume", "hypervolume_curve", "rejected", "front",
        "selected", "rule", "metric", "goal", "index", "arch", "metrics", "arch_file", "min", "max"]  # fmt: skip




@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(steps=st.lists(st.integers(-20, 20), min_size=1, max_size=5), value=VALUES)
def test_fuzz_pareto_file_gives_a_page_or_one_line(runs, tmp_path_factory, steps, value):
    folder = copy_run(runs, tmp_path_factory.mktemp("fuzz") / "run")
    path = folder / "search" / "pareto.yaml"
    path.write_text(yaml.safe_dump(mutate(yaml.safe_load(path.read_text()), steps, value, KEYS)))
    try:
        page = report(folder)
    except UserError as e:
        assert "\n" not in str(e), str(e)
        return
    assert_urls_stay_inside(page)
