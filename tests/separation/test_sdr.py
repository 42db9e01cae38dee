"""SDR against cases computable by hand."""

from __future__ import annotations

import logging
from functools import partial

import numpy as np
import pytest

from emomucs.audio import AudioSet, LazyAudio
from emomucs.separation import score_stems, sdr, summarize_sdr


def test_sdr_of_half_the_signal_is_ten_log_four():
    reference = np.ones((1, 2, 100))
    # error is half the signal: energy ratio 1 / 0.25
    assert sdr(reference, 0.5 * reference)[0] == pytest.approx(
        10 * np.log10(4), abs=1e-6
    )


def test_sdr_of_silence_estimate_is_zero_db_and_orthogonal_noise_too():
    reference = np.zeros((1, 1, 4))
    reference[0, 0, 0] = 1.0
    assert sdr(reference, np.zeros_like(reference))[0] == pytest.approx(0.0, abs=1e-6)
    noisy = reference.copy()
    noisy[0, 0, 1] = 1.0  # error energy 1 = signal energy 1
    assert sdr(reference, noisy)[0] == pytest.approx(0.0, abs=1e-6)


def test_sdr_is_per_leading_index():
    reference = np.ones((2, 1, 10))
    estimate = np.stack([np.full((1, 10), 0.9), np.zeros((1, 10))])
    scores = sdr(reference, estimate)
    assert scores.shape == (2,)
    assert scores[0] == pytest.approx(20.0, abs=1e-4)  # 10 log10(1 / 0.01)
    assert scores[1] == pytest.approx(0.0, abs=1e-6)


def test_sdr_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        sdr(np.ones((1, 1, 3)), np.ones((1, 1, 4)))


def test_summary_means_gain_over_tracks_and_sources():
    model = {1: np.array([10.0, 6.0]), 2: np.array([20.0, 8.0])}
    floor = {1: np.array([0.0, -2.0]), 2: np.array([-10.0, -4.0])}
    report = summarize_sdr(model, floor, ("a", "b"))
    assert report["tracks"] == 2
    assert report["sources"]["a"] == {
        "model_db": 15.0,
        "floor_db": -5.0,
        "gain_db": 20.0,
    }
    assert report["sources"]["b"]["gain_db"] == pytest.approx(10.0)
    assert report["mean"]["gain_db"] == pytest.approx(15.0)
    assert report["per_track"]["2"]["b"]["floor_db"] == -4.0


def test_score_stems_reports_absence_and_the_floor():
    rng = np.random.default_rng(0)
    truth = rng.standard_normal((4, 1, 200)).astype(np.float32)
    mix = truth.sum(axis=0)
    stems = AudioSet(100, {5: truth * 0.5}, ("drums", "bass", "other", "vocals"))
    mixes = AudioSet(100, {5: mix})
    assert score_stems(stems, mixes, AudioSet(100, {}))["available"] is False
    report = score_stems(stems, mixes, AudioSet(100, {5: truth}, stems.sources))
    assert report["available"] and report["tracks"] == 1
    assert report["mean"]["model_db"] == pytest.approx(10 * np.log10(4), abs=1e-4)
    expected_floor = sdr(truth, np.broadcast_to(mix, truth.shape)).mean()
    assert report["mean"]["floor_db"] == pytest.approx(expected_floor, abs=1e-6)


def test_two_workers_score_every_track_as_one_process_does(caplog):
    sources = ("drums", "bass", "other", "vocals")
    ids = range(19)

    def lazy(kind: str, shape: tuple[int, ...]) -> LazyAudio:
        # loaded per track, as the pipeline's stems, mix and true stems are
        loaders = {i: partial(_signal, kind, i) for i in ids}
        return LazyAudio(loaders, dict.fromkeys(ids, shape))

    stems = AudioSet(100, lazy("estimate", (4, 1, 300)), sources)
    mixes = AudioSet(100, lazy("mix", (1, 300)))
    reference = AudioSet(100, lazy("truth", (4, 1, 300)), sources)
    alone = score_stems(stems, mixes, reference)
    with caplog.at_level(logging.INFO, logger="emomucs.local_pool"):
        pooled = score_stems(stems, mixes, reference, workers=2)
    assert "3 jobs on 2 processes (this one and 1 worker" in caplog.text
    assert pooled == alone and pooled["tracks"] == 19


def _signal(kind: str, track: int) -> np.ndarray:
    """A track's true stems, an estimate of them, or their mix."""
    rng = np.random.default_rng(track)
    truth = rng.standard_normal((4, 1, 300)).astype(np.float32)
    if kind == "truth":
        return truth
    if kind == "mix":
        return truth.sum(axis=0)
    return truth + 0.3 * rng.standard_normal(truth.shape).astype(np.float32)
