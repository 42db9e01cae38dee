"""Features: log-mels and waveforms of the mix and the stems."""

from __future__ import annotations

import logging
from functools import partial

import librosa
import numpy as np
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from emomucs import SOURCES
from emomucs.audio import AudioSet, LazyAudio
from emomucs.pipelines.features import create_pipeline
from emomucs.pipelines.features.nodes import collect_waveforms, compute_log_mel
from emomucs.training.data import validate_features

OPTIONS = {
    "sample_rate": 22050,
    "length_tolerance_s": 0.1,
    "log_mel": {"n_mels": 40, "n_fft": 1024, "hop_length": 512, "top_db": 80.0},
    "cqt": {
        "n_bins": 84,
        "bins_per_octave": 12,
        "fmin_note": "C1",
        "hop_length": 512,
        "top_db": 80.0,
    },
    "chroma": {
        "n_chroma": 12,
        "bins_per_octave": 36,
        "n_octaves": 7,
        "fmin_note": "C1",
        "hop_length": 512,
    },
}


def _noise(*shape: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def test_twenty_seconds_give_862_frames_as_the_original():
    mix = AudioSet(22050, {7: _noise(1, 20 * 22050), 3: _noise(1, 20 * 22050, seed=1)})
    features = compute_log_mel(mix, OPTIONS)
    validate_features(features)
    assert features["values"].shape == (2, 1, 40, 862)
    assert features["sources"] == ["mix"]
    assert features["music_ids"].tolist() == [3, 7]
    # Same as librosa's melspectrogram + power_to_db(ref=np.max), track by track.
    expected = librosa.power_to_db(
        librosa.feature.melspectrogram(
            y=mix.audio[7][0], sr=22050, n_fft=1024, hop_length=512, n_mels=40
        ),
        ref=np.max,
        top_db=80.0,
    )
    assert np.allclose(features["values"][1, 0].numpy(), expected, atol=1e-4)
    assert features["values"].max() == 0.0 and features["values"].min() >= -80.0


def test_every_stem_equals_librosa_on_that_stem_alone():
    # log_mel computes the sources of a track together (one STFT call, one matrix
    # product with the mel basis); each must still be librosa's on its own.
    stems = AudioSet(22050, {4: _noise(4, 1, 22050, seed=3)}, sources=SOURCES)
    values = compute_log_mel(stems, OPTIONS)["values"][0].numpy()
    for row, signal in enumerate(stems.audio[4][:, 0]):
        expected = librosa.power_to_db(
            librosa.feature.melspectrogram(
                y=signal, sr=22050, n_fft=1024, hop_length=512, n_mels=40
            ),
            ref=np.max,
            top_db=80.0,
        )
        assert np.allclose(values[row], expected, atol=1e-4)


def test_stems_are_mono_resampled_and_keep_their_source_order():
    # Stereo stems at 44.1 kHz, 2 s: down-mixed, resampled to 22,050 Hz.
    stems = AudioSet(
        44100,
        {1: _noise(4, 2, 2 * 44100), 2: _noise(4, 2, 2 * 44100, seed=2)},
        sources=SOURCES,
        attrs={"separator": "test"},
    )
    stems.audio[2][3] = 0.0  # silent vocals: all zeros in dB relative to max
    log_mel = compute_log_mel(stems, OPTIONS)
    assert log_mel["values"].shape == (2, 4, 40, 87)
    assert log_mel["sources"] == list(SOURCES)
    assert torch.all(log_mel["values"][1, 3] == 0)
    assert log_mel["settings"]["audio_attrs"] == {"separator": "test"}
    waves = collect_waveforms(stems, OPTIONS)
    assert waves["values"].shape == (2, 4, 2 * 22050)
    assert waves["representation"] == "waveform" and waves["sample_rate"] == 22050
    # A 440 Hz tone, in phase on both channels, comes out as the same tone.
    seconds = np.arange(2 * 44100) / 44100
    stems.audio[1][0] = 0.5 * np.sin(2 * np.pi * 440 * seconds, dtype=np.float32)
    tone = collect_waveforms(stems, OPTIONS)["values"][0, 0].numpy()
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(2 * 22050) / 22050)
    assert np.allclose(tone[1000:-1000], expected[1000:-1000], atol=1e-2)


def test_broken_tracks_are_named():
    short = AudioSet(22050, {1: _noise(1, 44100), 2: _noise(1, 22050)})
    with pytest.raises(ValueError, match="track 2: mix is 1.00 s long"):
        compute_log_mel(short, OPTIONS)
    nan = AudioSet(22050, {5: np.full((1, 44100), np.nan, dtype=np.float32)})
    with pytest.raises(ValueError, match="track 5: mix audio contains NaN"):
        collect_waveforms(nan, OPTIONS)
    stems = AudioSet(22050, {9: _noise(3, 1, 44100)}, sources=SOURCES)
    with pytest.raises(ValueError, match="track 9: stems has 3 sources"):
        compute_log_mel(stems, OPTIONS)


def test_pipeline_runs_on_an_in_memory_catalog():
    mix = AudioSet(22050, {1: _noise(1, 44100), 2: _noise(1, 44100, seed=1)})
    stems = AudioSet(
        22050, {1: _noise(4, 1, 44100), 2: _noise(4, 1, 44100, seed=3)}, sources=SOURCES
    )
    catalog = DataCatalog(
        {
            "mix": MemoryDataset(mix),
            "stems": MemoryDataset(stems),
            "params:features": MemoryDataset(OPTIONS),
        }
    )
    outputs = SequentialRunner().run(create_pipeline(), catalog)
    shapes = {name: tuple(catalog.load(name)["values"].shape) for name in outputs}
    assert shapes == {
        "mix_log_mel": (2, 1, 40, 87),
        "stems_log_mel": (2, 4, 40, 87),
        "mix_chroma": (2, 1, 12, 87),
        "stems_chroma": (2, 4, 12, 87),
        "mix_cqt": (2, 1, 84, 87),
        "stems_cqt": (2, 4, 84, 87),
        "mix_waveform": (2, 1, 44100),
        "stems_waveform": (2, 4, 44100),
    }


def test_two_workers_give_the_same_features_in_track_order(caplog):
    # 20 tracks: three tasks of up to 8, spread over two worker processes
    ids = list(range(40, 0, -2))
    # loaded per track, as the stems from the cache are (audio held in memory stays
    # in this process)
    lazy = LazyAudio(
        {i: partial(_noise, 4, 1, 22050, seed=i) for i in ids},
        dict.fromkeys(ids, (4, 1, 22050)),
    )
    stems = AudioSet(22050, lazy, sources=SOURCES)
    alone = compute_log_mel(stems, {**OPTIONS, "workers": 1})
    with caplog.at_level(logging.INFO, logger="emomucs.local_pool"):
        pooled = compute_log_mel(stems, {**OPTIONS, "workers": 2})
    assert "3 jobs on 2 processes (this one and 1 worker" in caplog.text
    assert pooled["music_ids"].tolist() == sorted(ids)
    assert torch.equal(pooled["values"], alone["values"])
    assert pooled["settings"] == alone["settings"]
