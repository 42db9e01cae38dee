"""A run killed with SIGKILL mid-write resumes without redoing finished work.

Each test starts a child process (``python -m tests.test_resume <job> ...``) that runs
the real library code with its on-disk cache: the separation of a few clips with a
tiny local Demucs model, or the nested CV of one variant. The child records every
track it separates or split it trains, and is made to stop half-way through writing
the Nth cache file (its write hangs after flushing half the bytes) so the kill leaves
what a real kill mid-write leaves: finished entries, one partial temporary file, and
nothing for the rest. The test then kills it with SIGKILL, reruns the job to the end
and checks that finished entries were neither recomputed nor rewritten, that the
partial file was not used, and that the result equals an uninterrupted run's.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import torch

from emomucs import audio_codec
from emomucs.audio_codec import QUANTISATION_STEP
from tests.tiny_project import PROJECT, TINY_RATE, subprocess_env, write_tiny_repo

HANG = "hanging mid-write"

# --- the child process ---------------------------------------------------------------


def _record(log: Path, line: str) -> None:
    with log.open("a") as stream:
        stream.write(line + "\n")
        stream.flush()
        os.fsync(stream.fileno())


class _HalfWrite(ModuleType):
    """A stand-in for a module whose ``save`` writes half a file, then hangs, on the
    ``hang_at``-th call (counting from 1); everything else is the real module's."""

    def __init__(self, real: ModuleType, hang_at: int, log: Path) -> None:
        super().__init__(real.__name__)
        self._real, self._hang_at, self._log, self._calls = real, hang_at, log, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def save(self, *args: Any, **kwargs: Any) -> None:
        self._calls += 1
        if self._calls != self._hang_at:
            return self._real.save(*args, **kwargs)
        # np.save(file, array) and torch.save(obj, file) take the stream in turn
        is_numpy = self._real.__name__ == "numpy"
        stream, value = (args[0], args[1]) if is_numpy else (args[1], args[0])
        whole = io.BytesIO()
        if is_numpy:
            self._real.save(whole, value, **kwargs)
        else:
            self._real.save(value, whole, **kwargs)
        self._write_half_and_hang(stream, whole.getvalue())

    def savez(self, stream: Any, **arrays: Any) -> None:
        """np.savez(file, **arrays), as the stems cache writes its entries."""
        self._calls += 1
        if self._calls != self._hang_at:
            return self._real.savez(stream, **arrays)
        whole = io.BytesIO()
        self._real.savez(whole, **arrays)
        self._write_half_and_hang(stream, whole.getvalue())

    def _write_half_and_hang(self, stream: Any, data: bytes) -> None:
        stream.write(data[: len(data) // 2])
        stream.flush()
        os.fsync(stream.fileno())
        _record(self._log, HANG)
        time.sleep(600)  # until the parent's SIGKILL
        raise AssertionError("the parent should have killed this process")


def tiny_clips(count: int = 6, seconds: float = 1.5) -> dict[int, np.ndarray]:
    """Stereo noise clips at the tiny separator's rate, keyed 1..count."""
    rng = np.random.default_rng(7)
    return {
        music_id: (0.1 * rng.standard_normal((2, int(TINY_RATE * seconds)))).astype(
            np.float32
        )
        for music_id in range(1, count + 1)
    }


SEPARATION_OPTIONS = {"batch_size": 2, "device": "cpu"}


def separate_clips(
    repo: Path, cache_dir: Path | None, clips: dict[int, np.ndarray] | None = None
) -> dict[int, np.ndarray]:
    """Clips (the tiny ones by default) separated by the tiny model, as the
    separation node does."""
    from emomucs.separation import (
        ApplyOptions,
        SeparatorSpec,
        StemsCache,
        load_separator,
        separate_tracks,
    )

    separator = load_separator(SeparatorSpec("local", "tiny", str(repo)))
    return separate_tracks(
        tiny_clips() if clips is None else clips,
        TINY_RATE,
        separator,
        TINY_RATE,
        ApplyOptions(**SEPARATION_OPTIONS),
        StemsCache(cache_dir),
        seed=0,
        progress=False,
    )


def _child_separate(repo: str, cache: str, out: str, log: str, hang_at: str) -> None:
    from emomucs.separation import cache as cache_module
    from emomucs.separation import separate

    log_path = Path(log)
    owner: dict[int, int] = {}
    real_batch = separate.separate_batch

    def counted(model, clips, *args, **kwargs):
        _record(log_path, "computed " + " ".join(str(owner[id(c)]) for c in clips))
        return real_batch(model, clips, *args, **kwargs)

    separate.separate_batch = counted
    if int(hang_at):
        cache_module.np = _HalfWrite(np, int(hang_at), log_path)
    # separate_tracks hands these very arrays to separate_batch
    clips = tiny_clips()
    owner.update({id(clip): music_id for music_id, clip in clips.items()})
    stems = separate_clips(Path(repo), Path(cache), clips)
    np.savez(out, **{str(k): v for k, v in stems.items()})


def cv_inputs(folder: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Features, labels and folds of 12 synthetic tracks, written once by the test."""
    features = torch.load(folder / "features.pt", weights_only=True)
    table = pd.read_csv(folder / "track_table.csv")
    folds = pd.read_csv(folder / "cv_folds.csv")
    return features, table, folds


EXPERIMENT = {"model": "C1D", "sources": ["vocals"]}
TRAINING = {
    "repeats": 1,
    "max_epochs": 2,
    "patience": 1,
    "batch_size": 8,
    "eval_batch_size": 8,
    "seed": 2020,
    "progress": False,
    "num_threads": 1,
}


def nested_cv(folder: Path, cache_dir: Path | None):
    """The experiments pipeline's two nodes on the tiny inputs."""
    from emomucs.pipelines.experiments.nodes import (
        evaluate_predictions,
        train_nested_cv,
    )

    features, table, folds = cv_inputs(folder)
    training = {**TRAINING, "cache_dir": str(cache_dir) if cache_dir else None}
    models, predictions, log = train_nested_cv(
        features, table, folds, EXPERIMENT, {"C1D": {}}, training
    )
    metrics, summary = evaluate_predictions(
        predictions, folds, models, table, EXPERIMENT, {}
    )
    return models, predictions, log, metrics, summary


def _child_train(inputs: str, cache: str, out: str, log: str, hang_at: str) -> None:
    from emomucs.training import cache as cache_module
    from emomucs.training import nested_cv as nested_cv_module

    log_path = Path(log)
    real_train = nested_cv_module.train_model

    def counted(*args, **kwargs):
        _record(log_path, "trained " + kwargs["label"])
        return real_train(*args, **kwargs)

    nested_cv_module.train_model = counted
    if int(hang_at):
        cache_module.torch = _HalfWrite(torch, int(hang_at), log_path)
    _, predictions, training_log, metrics, _ = nested_cv(Path(inputs), Path(cache))
    out_path = Path(out)
    out_path.mkdir(parents=True, exist_ok=True)
    # parquet keeps dtypes and every bit of the floats, without pickle
    predictions.to_parquet(out_path / "predictions.parquet")
    training_log.to_parquet(out_path / "training_log.parquet")
    metrics.to_parquet(out_path / "metrics.parquet")


JOBS = {"separate": _child_separate, "train": _child_train}

# --- the parent ------------------------------------------------------------------------


def _start(job: str, *args: Path | str | int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.test_resume", job, *map(str, args)],
        cwd=PROJECT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.is_file() else []


def _kill_when_hanging(child: subprocess.Popen, log: Path, timeout: float = 120):
    """SIGKILL the child once it hangs half-way through a cache write."""
    deadline = time.monotonic() + timeout
    while HANG not in _lines(log):
        if child.poll() is not None:
            raise AssertionError(f"child ended before the kill:\n{child.stdout.read()}")
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError("child never reached the write it should hang in")
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


def _finish(child: subprocess.Popen) -> None:
    output, _ = child.communicate(timeout=300)
    assert child.returncode == 0, output[-4000:]


def _stats(files: list[Path]) -> dict[str, tuple[int, int]]:
    return {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in files}


def test_killed_separation_resumes_without_recomputing_finished_tracks(tmp_path):
    repo = tmp_path / "repo"
    write_tiny_repo(repo)
    cache = tmp_path / "stems_cache"
    log = tmp_path / "computed.log"
    # Batches of two: [1, 2], [3, 4], [5, 6]; the 4th write (track 4) is cut short.
    _kill_when_hanging(_start("separate", repo, cache, tmp_path / "x.npz", log, 4), log)
    assert [line for line in _lines(log) if line != HANG] == [
        "computed 1 2",
        "computed 3 4",
    ]
    finished = sorted(cache.glob("*.npz"))
    assert [int(f.name.split("-")[0]) for f in finished] == [1, 2, 3]
    partial = [f for f in cache.iterdir() if f.suffix != ".npz"]
    assert len(partial) == 1 and partial[0].name.startswith(".4-")
    assert partial[0].stat().st_size > 0  # half a file, which no load may use
    before = _stats(finished)

    log.unlink()
    _finish(_start("separate", repo, cache, tmp_path / "resumed.npz", log, 0))
    assert _lines(log) == ["computed 4 5", "computed 6"]
    assert _stats(finished) == before
    assert len(list(cache.glob("*.npz"))) == 6

    resumed = dict(np.load(tmp_path / "resumed.npz"))
    # the cache stores 16-bit FLAC: compare with the reference stored the same way
    reference = {
        music_id: audio_codec.decode(*audio_codec.encode(stems, 8000), stems.shape)
        for music_id, stems in separate_clips(repo, None).items()
    }
    assert sorted(map(int, resumed)) == sorted(reference)
    for music_id, stems in reference.items():
        got = resumed[str(music_id)]
        assert got.shape == stems.shape == (4, 1, 12000)
        if music_id <= 3:
            # cached tracks were separated in the same batches as the reference's
            assert np.array_equal(got, stems), music_id
        else:
            # resumed batches pair other clips; batch-mates move float rounding only,
            # which may move a sample to the next 16-bit step of its stem's peak
            step = np.abs(stems).max(axis=-1, keepdims=True) * QUANTISATION_STEP
            assert (np.abs(got - stems) <= step * 1.001 + 1e-6).all(), music_id


def test_killed_nested_cv_resumes_without_retraining_finished_splits(tmp_path):
    from emomucs.pipelines.features.nodes import compute_log_mel
    from emomucs.training import assign_folds
    from tests.training.conftest import FEATURE_OPTIONS
    from tests.training.synthetic import make_corpus

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    table, _, stems = make_corpus(n_tracks=12, seconds=2.0, seed=3)
    torch.save(compute_log_mel(stems, FEATURE_OPTIONS), inputs / "features.pt")
    table.to_csv(inputs / "track_table.csv", index=False)
    assign_folds(table["musicId"], outer_folds=3, inner_folds=2, seed=0).to_csv(
        inputs / "cv_folds.csv", index=False
    )
    cache = tmp_path / "cv_cache"
    log = tmp_path / "trained.log"
    # Splits run (0, 0), (0, 1), (1, 0), (1, 1), ...; the 4th write is cut short.
    _kill_when_hanging(_start("train", inputs, cache, tmp_path / "x", log, 4), log)
    trained = [line for line in _lines(log) if line != HANG]
    assert len(trained) == 4 and "outer fold 1, inner split 1" in trained[-1]
    finished = sorted(cache.rglob("*.pt"))
    assert [f.name.split("-")[0] for f in finished] == [
        "repeat0_outer0_inner0",
        "repeat0_outer0_inner1",
        "repeat0_outer1_inner0",
    ]
    partial = [
        f for f in cache.rglob("*") if f.is_file() and f.suffix not in (".pt", ".json")
    ]
    assert len(partial) == 1 and partial[0].stat().st_size > 0
    before = _stats(finished)

    log.unlink()
    _finish(_start("train", inputs, cache, tmp_path / "resumed", log, 0))
    retrained = _lines(log)
    assert [re.search(r"outer fold \d, inner split \d", x)[0] for x in retrained] == [
        "outer fold 1, inner split 1",
        "outer fold 2, inner split 0",
        "outer fold 2, inner split 1",
    ]
    assert _stats(finished) == before
    assert len(list(cache.rglob("*.pt"))) == 6

    _, predictions, training_log, metrics, _ = nested_cv(inputs, None)
    resumed = tmp_path / "resumed"
    for name, expected in [
        ("predictions", predictions),
        ("training_log", training_log),
        ("metrics", metrics),
    ]:
        got = pd.read_parquet(resumed / f"{name}.parquet")
        pd.testing.assert_frame_equal(got, expected, check_exact=True, obj=name)


if __name__ == "__main__":
    torch.set_num_threads(1)
    JOBS[sys.argv[1]](*sys.argv[2:])
