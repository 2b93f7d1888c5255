"""SPOS on NB201 with the real CIFAR-10 subset (bench_spos.py's settings, seed 0): train the supernet and search it
once, then search the saved supernet again under a predicted-latency bound (the 25th percentile of all cells at the
supernet's size), without retraining; prints both times.

    archsearch profile --space nasbench201 --init-channels 8 --cells 1 --repeats 20 --out C8.json
    OMP_NUM_THREADS=1 python scripts/bench_spos_again_latency.py --latency-table C8.json
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import archsearch, archsearch.plugins  # noqa
from archsearch.experiment.run import RunOptions
from archsearch.model.latency import LatencyTable
from archsearch.spaces.nasbench201 import NasBench201Space, all_archs

torch.set_num_threads(1)
import argparse  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--latency-table", required=True, help="an NB201 latency table profiled at C=8, N=1")
parser.add_argument("--logdir", default="/tmp/bench_spos")
args = parser.parse_args()
TABLE = args.latency_table
space = NasBench201Space({}, {"init_channels": 8, "n_cells_per_stage": 1}, {"channels": 3, "n_classes": 10})
lat = LatencyTable.load(TABLE)
preds = np.array([lat.predict(space.cost_items(a)) for a in all_archs()])
bound = float(np.percentile(preds, 25))
print(f"predicted latency at C=8 N=1 over all cells: min {preds.min():.3f} median {np.median(preds):.3f} "
      f"max {preds.max():.3f} ms; bound (25th percentile) {bound:.3f} ms")
S = str(Path(__file__).resolve().parents[2] / "shared" / "data")
seed = 0
settings = {
    "common.logdir": args.logdir, "common.num_threads": 1, "report.auto": False, "common.seed": seed,
    "dataset.path": f"{S}/cifar10_subset.npz", "dataset.channels": 3, "dataset.image_size": 32, "dataset.n_classes": 10,
    "dataset.test_fraction": 0.2, "dataset.crop_padding": 4, "dataset.hflip": True,
    "nas.search.space.name": "nasbench201", "nas.search.benchmark": f"{S}/nasbench201_info.csv",
    "nas.search.model_desc.init_channels": 8, "nas.search.model_desc.n_cells_per_stage": 1,
    "nas.search.loader.batch_size": 64, "nas.search.loader.limit_batches": None, "nas.search.loader.train_portion": 0.5,
    "nas.search.model_desc.affine": False,
    "nas.search.trainer.epochs": 10, "nas.search.trainer.optimizer.lr": 0.1,
    "nas.search.spos.bn_batches": 4, "nas.search.spos.eval_batches": 16,
    "nas.search.rea.n_trials": 100, "nas.search.rea.population_size": 20, "nas.search.rea.sample_size": 5,
    "nas.search.metrics.latency_table": TABLE,
}
wall, cpu = time.perf_counter(), time.process_time()
summary = archsearch.run("spos", "npz", RunOptions(phases="search", exp_prefix="train_latency0"), settings)
print(f"train + search (no constraint): {time.perf_counter() - wall:.1f} s wall, "
      f"{time.process_time() - cpu:.1f} s CPU; {summary['search']}")
settings["nas.search.supernet"] = f"{args.logdir}/train_latency0_npz_toy/spos/search/supernet.pt"
settings["nas.search.constraints"] = {"predicted_latency_ms": {"max": bound}}
wall, cpu = time.perf_counter(), time.process_time()
summary = archsearch.run("spos", "npz", RunOptions(phases="search", exp_prefix="again_latency0"), settings)
print(f"search again under predicted_latency_ms <= {bound:.3f}: {time.perf_counter() - wall:.1f} s wall, "
      f"{time.process_time() - cpu:.1f} s CPU; {summary['search']}")
