"""Separation benchmark: SDR reached by the compact separator and seconds per 20 s clip.

Run after ``kedro run --pipeline=separator_training`` (and, for the corpus SDR,
``kedro run --pipeline=separation``)::

    python benchmarks/separation.py [--clips 8] [--threads 2] [--no-reference]

It reads the latest versions of ``data/08_reporting/separator_sdr.json`` (held-out
multitrack songs) and ``separator_training_history.json``, loads the separator from
``data/06_models/separator``, and times the separation of 20 s stereo clips at 22.05 kHz
(the synthetic corpus' choruses) with one and with four clips per forward pass. As a
reference it also times one clip through an HTDemucs of the pretrained ``htdemucs`` size
(random weights, 44.1 kHz: the paper setting's cost, without needing the weights), and
times a few training steps of the configured compact model (random audio) to give the
training time the configured step count needs on this machine now. The load average is
recorded: on a shared machine the timings are pessimistic.

Writes ``benchmarks/results/separation.json`` and ``separation.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from emomucs import SOURCES
from emomucs.audio import fix_length, load_audio, resample, set_channels
from emomucs.separation import (
    ApplyOptions,
    LoadedSeparator,
    SeparatorSpec,
    StemsCache,
    TrainingOptions,
    load_separator,
    separate_tracks,
    train_compact_separator,
)

ROOT = Path(__file__).resolve().parents[1]
REPORTING = ROOT / "data" / "08_reporting"
RESULTS = ROOT / "benchmarks" / "results"
CLIP_SECONDS, RATE = 20.0, 22050


def latest(name: str) -> dict | None:
    """The newest version of a versioned JSON artifact, or None."""
    versions = sorted((REPORTING / name).glob(f"*/{name}"))
    return json.loads(versions[-1].read_text()) if versions else None


def corpus_clips(count: int) -> dict[int, np.ndarray]:
    folder = ROOT / "data" / "01_raw" / "synthetic" / "PMEmo2019" / "chorus"
    files = sorted(folder.glob("*.wav"))[:count]
    if len(files) < count:
        raise SystemExit(f"{folder}: need {count} choruses, found {len(files)}")
    clips = {}
    for index, file in enumerate(files):
        audio, rate = load_audio(file)
        audio = resample(set_channels(audio, 2), rate, RATE)
        clips[index] = fix_length(audio, int(CLIP_SECONDS * RATE))
    return clips


def seconds_per_clip(
    separator: LoadedSeparator, clips: dict[int, np.ndarray], batch_size: int
) -> float:
    options = ApplyOptions(batch_size=batch_size, device="cpu")
    separate_tracks(  # warm-up: first calls allocate and pick kernels
        {0: clips[0]}, RATE, separator, RATE, options, StemsCache(None), progress=False
    )
    started = time.perf_counter()
    separate_tracks(
        clips, RATE, separator, RATE, options, StemsCache(None), progress=False
    )
    return (time.perf_counter() - started) / len(clips)


def reference_size_seconds(clip: np.ndarray) -> float:
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(0)
    model = HTDemucs(list(SOURCES), samplerate=44100, segment=7.8).eval()
    separator = LoadedSeparator(model, identity="reference:htdemucs-size-random")
    return seconds_per_clip(separator, {0: clip, 1: clip}, batch_size=1)


def training_step_seconds(steps: int, threads: int) -> dict:
    """Seconds per step of the configured training, on random audio, after a warm-up."""
    params = yaml.safe_load(
        (ROOT / "conf/base/parameters/separator_training.yml").read_text()
    )["separator_training"]["training"]
    rng = np.random.default_rng(0)
    songs = [
        (0.05 * rng.standard_normal((4, 2, 12 * params["sample_rate"]))).astype(
            np.float32
        )
        for _ in range(4)
    ]
    timed = {**params, "threads": threads, "warmup_steps": 1}
    train_compact_separator(
        songs, TrainingOptions.from_options({**timed, "steps": 2}), False
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    train_compact_separator(
        songs, TrainingOptions.from_options({**timed, "steps": steps}), False
    )
    per_step = (time.perf_counter() - started) / steps
    return {
        "seconds_per_step": per_step,
        # all threads together: divided by the threads, the wall time of an idle machine
        # if they ran perfectly in parallel (a lower bound)
        "cpu_seconds_per_step": (time.process_time() - cpu_started) / steps,
        "configured_steps": params["steps"],
        "estimated_seconds": per_step * params["steps"],
        "load": [round(value, 2) for value in os.getloadavg()],
    }


def markdown(result: dict) -> str:
    lines = ["# Separation benchmark", ""]
    held_out = result.get("held_out_sdr")
    if held_out:
        lines += [
            f"Compact separator `{result['separator']}`, SDR on "
            f"{held_out['tracks']} held-out synthetic multitrack songs (dB):",
            "",
            "| source | separator | mix as estimate | gain |",
            "|---|---|---|---|",
        ]
        for source, row in {
            **held_out["sources"],
            "**mean**": held_out["mean"],
        }.items():
            lines.append(
                f"| {source} | {row['model_db']:.2f} | {row['floor_db']:.2f} | "
                f"{row['gain_db']:+.2f} |"
            )
        lines.append("")
    corpus = result.get("corpus_sdr")
    if corpus and corpus.get("available"):
        lines += [
            f"On the {corpus['tracks']} corpus clips (mono, 22.05 kHz, against the true "
            f"stems): {corpus['mean']['model_db']:.2f} dB mean SDR, floor "
            f"{corpus['mean']['floor_db']:.2f} dB, gain {corpus['mean']['gain_db']:+.2f} dB.",
            "",
        ]
    training = result.get("training")
    if training:
        cpu = training.get("cpu_seconds")
        lines += [
            f"Training run: {training['steps']} steps in {training['seconds']:.0f} s "
            f"with {training['threads']} threads"
            + (f" ({cpu:.0f} CPU seconds)" if cpu else "")
            + " on the shared machine.",
            "",
        ]
    steps = result.get("training_steps")
    if steps:
        lines += [
            f"Training step timing now: {steps['seconds_per_step']:.2f} s per step, so "
            f"{steps['configured_steps']} steps take about "
            f"{steps['estimated_seconds']:.0f} s (load average {steps['load']}); "
            f"{steps['cpu_seconds_per_step']:.2f} CPU seconds per step.",
            "",
        ]
    timing = result["timing"]
    lines += [
        f"Separation of {CLIP_SECONDS:.0f} s stereo clips at 22.05 kHz, "
        f"{result['machine']['threads']} torch threads, {result['machine']['cpus']} CPUs, "
        f"load average {result['machine']['load_before']} before and "
        f"{result['machine']['load_after']} after (other jobs share the machine, so "
        "these are pessimistic):",
        "",
        "| separator | clips per pass | seconds per clip |",
        "|---|---|---|",
        f"| compact | 1 | {timing['compact_batch1_s']:.2f} |",
        f"| compact | 4 | {timing['compact_batch4_s']:.2f} |",
    ]
    if "htdemucs_size_s" in timing:
        lines.append(
            f"| htdemucs size (44.1 kHz) | 1 | {timing['htdemucs_size_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--training-steps", type=int, default=20, help="0 skips")
    args = parser.parse_args()
    os.chdir(ROOT)
    torch.set_num_threads(args.threads)
    separator = load_separator(
        SeparatorSpec("local", "emomucs_compact", "data/06_models/separator")
    )
    clips = corpus_clips(args.clips)
    load_before = [round(value, 2) for value in os.getloadavg()]
    timing = {
        "compact_batch1_s": seconds_per_clip(separator, clips, 1),
        "compact_batch4_s": seconds_per_clip(separator, clips, 4),
    }
    if not args.no_reference:
        timing["htdemucs_size_s"] = reference_size_seconds(clips[0])
    steps = (
        training_step_seconds(args.training_steps, args.threads)
        if args.training_steps
        else None
    )
    history = latest("separator_training_history.json")
    result = {
        "separator": separator.identity,
        "held_out_sdr": _without_per_track(latest("separator_sdr.json")),
        "corpus_sdr": _without_per_track(latest("separation_sdr.json")),
        "training": {
            k: history.get(k) for k in ("steps", "seconds", "cpu_seconds", "threads")
        }
        if history
        else None,
        "training_steps": steps,
        "timing": timing,
        "machine": {
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "load_before": load_before,
            "load_after": [round(value, 2) for value in os.getloadavg()],
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "clip_seconds": CLIP_SECONDS,
        "clips_timed": args.clips,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "separation.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "separation.md").write_text(markdown(result))
    print(markdown(result))  # noqa: T201


def _without_per_track(report: dict | None) -> dict | None:
    if report is None:
        return None
    return {k: v for k, v in report.items() if k not in {"per_track", "training_args"}}


if __name__ == "__main__":
    main()
