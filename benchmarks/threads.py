"""Thread-count benchmark: one torch thread against all cores, for the default run's work.

    python -m benchmarks --only threads
    python -m benchmarks.threads [--clips 2] [--epochs 5] [--threads 2]

In one process, alternating the two settings, it times (wall and CPU seconds):

- separating 20 s stereo clips with the shipped compact separator (the separation
  stage's own ``separate_batch``, as ``separation.num_threads`` runs it);
- training epochs of C1D (mean pooling) and C2D (8 filters), the base networks, on
  random log-mel inputs of one inner split of the default corpus (43 tracks, 40 bands,
  862 frames), validation included.

Writes ``benchmarks/results/threads.json`` and ``threads.md``. It justifies
``training.num_threads: 1`` and ``separation.num_threads: 1`` in ``conf/base``: the
models are small, and on a busy machine threads mostly wait for each other.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.suite import ROOT, figure, machine, results_dir

QUICK_ARGS = ["--clips", "1", "--epochs", "2", "--tracks", "16"]


def _timed(work: Callable[[], None], threads: int) -> dict[str, float]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        return {
            "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu,
        }
    finally:
        torch.set_num_threads(previous)


def _separation(clips: int) -> Callable[[], None]:
    from emomucs.separation import ApplyOptions, SeparatorSpec, load_separator
    from emomucs.separation.separate import separate_batch

    spec = SeparatorSpec(
        "local", "emomucs_compact", str(ROOT / "data/06_models/separator")
    )
    separator = load_separator(spec)
    rate = separator.sample_rate
    rng = np.random.default_rng(0)
    audio = [
        (0.1 * rng.standard_normal((2, 20 * rate))).astype(np.float32)
        for _ in range(clips)
    ]
    options = ApplyOptions(device="cpu")

    def work() -> None:
        for clip in audio:
            separate_batch(separator.model, [clip], rate, rate, options)

    return work


def _training(network: str, tracks: int, epochs: int) -> Callable[[], None]:
    from emomucs.models.c1d import C1D
    from emomucs.models.c2d import C2D
    from emomucs.training.loop import TrainOptions, train_model

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(tracks, 40, 862, generator=generator)
    y = torch.rand(tracks, 2, generator=generator) * 2 - 1
    options = TrainOptions(
        batch_size=16, max_epochs=epochs, patience=epochs + 1, progress=False
    )

    def work() -> None:
        torch.manual_seed(0)
        model = C1D(pooling="mean") if network == "C1D" else C2D(n_filters=8)
        train_model(model, (x, y), (x, y), options, torch.Generator().manual_seed(1))

    return work


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--tracks", type=int, default=43)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    before = machine()
    tasks = {
        "separation": _separation(args.clips),
        "C1D training": _training("C1D", args.tracks, args.epochs),
        "C2D training": _training("C2D", args.tracks, args.epochs),
    }
    counts = sorted({1, args.threads})
    measured: dict[str, dict[str, dict[str, float]]] = {}
    for name, work in tasks.items():
        work()  # warm-up: first calls pay for allocation and kernel selection
        runs: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
        for _ in range(args.rounds):  # alternating, so a load change hits both
            for threads in counts:
                runs[threads].append(_timed(work, threads))
        measured[name] = {
            str(n): min(r, key=lambda run: run["wall_s"]) for n, r in runs.items()
        }
    result = {
        "settings": vars(args),
        "machine_before": before,
        "machine_after": machine(),
        "seconds": measured,
        "units": {
            "separation": f"{args.clips} clips of 20 s",
            "training": f"{args.epochs} epochs of {args.tracks} tracks",
        },
    }
    folder = results_dir()
    (folder / "threads.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "threads.md").write_text(_markdown(result))
    return result


def _markdown(result: dict[str, Any]) -> str:
    settings = result["settings"]
    load = result["machine_before"].get("load_average")
    lines = [
        "# One torch thread against all cores",
        "",
        f"`python -m benchmarks.threads --clips {settings['clips']} --epochs "
        f"{settings['epochs']} --tracks {settings['tracks']}`; "
        f"{result['units']['separation']} with the shipped compact separator, "
        f"{result['units']['training']} of the base C1D and C2D; fastest of "
        f"{settings['rounds']} alternating rounds; load average {load} before.",
        "",
        "| work | threads | wall s | CPU s |",
        "|---|---:|---:|---:|",
    ]
    for name, by_threads in result["seconds"].items():
        for threads, run in by_threads.items():
            lines.append(
                f"| {name} | {threads} | {run['wall_s']:.2f} | {run['cpu_s']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def summarize(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Wall time with all threads over one thread, per kind of work."""
    threads = str(result["settings"]["threads"])
    rows = []
    for name, by_threads in result["seconds"].items():
        if threads not in by_threads or threads == "1":
            continue
        one, many = by_threads["1"], by_threads[threads]
        rows.append(
            figure(
                f"{name}: {threads} threads vs 1, wall time",
                round(many["wall_s"], 2),
                "s",
                reference=round(one["wall_s"], 2),
                ratio=round(one["wall_s"] / many["wall_s"], 2),
                note=f"CPU s: {many['cpu_s']:.1f} vs {one['cpu_s']:.1f}",
            )
        )
    return rows


if __name__ == "__main__":
    main()
