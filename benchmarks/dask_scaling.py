"""Dask scaling benchmark: the nested-CV training grid on a local 2-worker cluster
against the sequential loop, on this machine.

    python -m benchmarks.dask_scaling [--tracks 32] [--seconds 8] [--epochs 4]
                                      [--repeats 2] [--workers 2] [--model C2D]

Trains one variant's whole grid (3 outer folds × 2 inner splits × ``--repeats``) on
synthetic stems (the test suite's tone corpus, log-mel as ``conf/base``) three ways,
in one run so the machine's load weighs on all three alike:

- sequential, torch on ``--workers`` threads (what ``kedro run`` does on this machine
  with ``training.num_threads: null``);
- sequential, one torch thread;
- :func:`emomucs.training.run_nested_cv` with a Dask cluster of ``--workers``
  single-threaded worker processes reachable, started as the runner starts one
  (:func:`emomucs.runners.local_cluster`): the fan-out of
  ``kedro run --runner=emomucs.runners.DaskRunner``, one task per split; timed
  with and without starting the cluster.

It checks that the Dask run's predictions equal the one-thread sequential run's bit
for bit (the same per-split seeds and thread count), and reports how far the
multi-threaded run's are from them (thread count changes float rounding). No cache:
every run trains every split. Writes ``benchmarks/results/dask_scaling.json`` and ``dask_scaling.md``
(or under ``$EMOMUCS_BENCHMARK_RESULTS``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
QUICK_ARGS = ["--tracks", "18", "--seconds", "3", "--epochs", "2", "--repeats", "1"]
FEATURES = {
    "sample_rate": 22050,
    "length_tolerance_s": 0.1,
    "log_mel": {"n_mels": 40, "n_fft": 1024, "hop_length": 512, "top_db": 80.0},
}


def _results_dir() -> Path:
    folder = Path(os.environ.get("EMOMUCS_BENCHMARK_RESULTS") or RESULTS)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _inputs(tracks: int, seconds: float):
    from emomucs.pipelines.features.nodes import compute_log_mel
    from emomucs.training import assign_folds
    from tests.training.synthetic import make_corpus

    table, _, stems = make_corpus(n_tracks=tracks, seconds=seconds, seed=3)
    folds = assign_folds(table["musicId"], outer_folds=3, inner_folds=2, seed=0)
    return compute_log_mel(stems, FEATURES), table, folds


def _train(inputs, model: str, epochs: int, repeats: int, threads: int):
    from emomucs.training import CVOptions, ExperimentSpec, run_nested_cv

    features, table, folds = inputs
    spec = ExperimentSpec.from_params({"model": model, "sources": ["vocals"]}, {})
    options = CVOptions.from_params(
        {
            "max_epochs": epochs,
            "patience": epochs,
            "batch_size": 16,
            "eval_batch_size": 32,
            "seed": 2020,
            "repeats": repeats,
            "standardise": True,
            "cache_dir": None,
            "num_threads": threads,
            "device": "cpu",
            "progress": False,
        }
    )
    torch.set_num_threads(threads)
    start = time.perf_counter()
    result = run_nested_cv(spec, features, table, folds, options)
    return time.perf_counter() - start, result.predictions


def _cpu_seconds(client=None) -> float:
    """CPU seconds used so far by this process, or by the client's workers."""
    if client is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    return sum(client.run(_cpu_seconds).values())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure, write ``dask_scaling.json`` and ``dask_scaling.md``, return what was written."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="C2D", choices=["C1D", "C2D"])
    args = parser.parse_args(argv)
    from distributed import Client

    from emomucs.runners import local_cluster

    inputs = _inputs(args.tracks, args.seconds)
    grid = (args.model, args.epochs, args.repeats)
    cpu = {}
    before = _cpu_seconds()
    threaded, threaded_predictions = _train(inputs, *grid, threads=args.workers)
    cpu["threaded"], before = _cpu_seconds() - before, _cpu_seconds()
    single, single_predictions = _train(inputs, *grid, threads=1)
    cpu["single"] = _cpu_seconds() - before
    start = time.perf_counter()
    with (
        local_cluster(args.workers, 1) as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: __import__("emomucs.training"))  # workers ready to train
        startup = time.perf_counter() - start
        before = _cpu_seconds(client)
        dask, dask_predictions = _train(inputs, *grid, threads=1)
        cpu["dask"] = _cpu_seconds(client) - before
    identical = dask_predictions.equals(single_predictions)
    columns = [c for c in single_predictions if c.endswith("_pred")]
    thread_difference = float(
        np.abs(
            threaded_predictions[columns].to_numpy()
            - single_predictions[columns].to_numpy()
        ).max()
    )
    splits = 3 * 2 * args.repeats
    result = {
        "command": "python -m benchmarks.dask_scaling "
        + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "settings": vars(args) | {"splits": splits},
        "machine": {
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "seconds": {
            f"sequential_{args.workers}_threads": round(threaded, 2),
            "sequential_1_thread": round(single, 2),
            f"dask_{args.workers}_workers": round(dask, 2),
            "dask_cluster_startup": round(startup, 2),
        },
        "cpu_seconds": {
            f"sequential_{args.workers}_threads": round(cpu["threaded"], 2),
            "sequential_1_thread": round(cpu["single"], 2),
            f"dask_{args.workers}_workers": round(cpu["dask"], 2),
        },
        "speedup": {
            "dask_vs_sequential_threads": round(threaded / dask, 2),
            "dask_vs_sequential_1_thread": round(single / dask, 2),
            "dask_with_startup_vs_sequential_threads": round(
                threaded / (dask + startup), 2
            ),
        },
        "dask_predictions_identical_to_1_thread": bool(identical),
        "max_prediction_difference_threads_vs_1_thread": thread_difference,
    }
    folder = _results_dir()
    (folder / "dask_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "dask_scaling.md").write_text(_markdown(result))
    return result


def _markdown(result: dict[str, Any]) -> str:
    settings, seconds = result["settings"], result["seconds"]
    cpu = result["cpu_seconds"]
    rows = "| run | wall seconds | CPU seconds |\n|---|---:|---:|\n" + "\n".join(
        f"| {name} | {value} | {cpu.get(name, '')} |" for name, value in seconds.items()
    )
    speedups = "\n".join(f"- {k}: **{v}×**" for k, v in result["speedup"].items())
    return (
        "# Dask scaling: the training grid on a local cluster\n\n"
        f"`{result['command']}`\n\n"
        f"{settings['model']} on vocals, {settings['tracks']} tracks of "
        f"{settings['seconds']} s, {settings['splits']} splits (3 outer × 2 inner × "
        f"{settings['repeats']} repeats), {settings['epochs']} epochs each; "
        f"{result['machine']['cpus']} CPUs, load average "
        f"{', '.join(f'{x:.2f}' for x in result['machine']['load_average'])} "
        "(a shared machine: read the ratios, measured in one run; CPU seconds are "
        "this process's, or the workers' for the Dask run).\n\n"
        f"{rows}\n\n{speedups}\n\n"
        "Dask predictions identical to the one-thread sequential run: "
        f"**{result['dask_predictions_identical_to_1_thread']}**; largest prediction "
        f"difference between {settings['workers']} torch threads and one: "
        f"{result['max_prediction_difference_threads_vs_1_thread']:.3g}.\n"
    )


def summarize(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The headline figure for ``python -m benchmarks``."""
    seconds, workers = result["seconds"], result["settings"]["workers"]
    reference = seconds[f"sequential_{workers}_threads"]
    value = seconds[f"dask_{workers}_workers"]
    ratio = result["speedup"]["dask_vs_sequential_threads"]
    return [
        {
            "figure": f"training grid, Dask {workers} workers vs sequential",
            "value": value,
            "unit": "s",
            "reference": reference,
            "ratio": ratio,
            "goal": "> 1 (faster), predictions identical to the 1-thread run",
            "met": ratio > 1 and result["dask_predictions_identical_to_1_thread"],
            "note": f"cluster start-up {seconds['dask_cluster_startup']} s not included",
        }
    ]


if __name__ == "__main__":
    main()
