"""Training the compact separator: reproducible, packaged as a loadable Demucs repo."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emomucs import SOURCES
from emomucs.datasets.demucs_repo_dataset import DemucsRepoDataset
from emomucs.separation import (
    ApplyOptions,
    SeparatorSpec,
    TrainingOptions,
    evaluate_separator_sdr,
    load_separator,
    package_model,
    sdr,
    train_compact_separator,
)
from emomucs.separation.training import separation_loss, source_weights

from .synth import synth_track

TINY = {
    "sample_rate": 8000,
    "model": {"channels": 8, "depth": 2, "nfft": 512, "t_layers": 1, "t_heads": 2},
    "segment_s": 0.5,
    "batch_size": 4,
    "steps": 3,
    "augment": {"shift_s": 0.1, "remix_group": 2},
}


@pytest.fixture(scope="module")
def songs() -> list[np.ndarray]:
    tracks = [synth_track(1.5, 8000, seed) for seed in range(3)]
    return [np.stack([track[source] for source in SOURCES]) for track in tracks]


def test_same_seed_same_model_and_losses(songs):
    options = TrainingOptions.from_options(TINY)
    first, history = train_compact_separator(songs, options, progress=False)
    second, again = train_compact_separator(songs, options, progress=False)
    assert history["steps"] == 3 and len(history["loss"]) == 3
    assert np.isfinite(history["loss"]).all()
    assert history["loss"] == again["loss"]
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    other, _ = train_compact_separator(
        songs, TrainingOptions.from_options({**TINY, "seed": 1}), progress=False
    )
    assert not torch.equal(
        other.state_dict()["encoder.0.conv.weight"],
        first.state_dict()["encoder.0.conv.weight"],
    )


def test_training_lowers_the_loss(songs):
    options = TrainingOptions.from_options({**TINY, "steps": 30, "lr": 0.01})
    _, history = train_compact_separator(songs, options, progress=False)
    assert np.mean(history["loss"][-5:]) < np.mean(history["loss"][:5])


def test_time_limit_stops_early_and_says_so(songs):
    options = TrainingOptions.from_options(
        {**TINY, "steps": 1000, "time_limit_s": 1e-9}
    )
    _, history = train_compact_separator(songs, options, progress=False)
    assert history["stopped_early"] and history["steps"] < 1000


def test_bad_batch_or_short_songs_are_refused(songs):
    with pytest.raises(ValueError, match="multiple of the remix group"):
        train_compact_separator(
            songs,
            TrainingOptions.from_options({**TINY, "batch_size": 3}),
            progress=False,
        )
    with pytest.raises(ValueError, match="at least 2.10 s"):
        train_compact_separator(
            songs,
            TrainingOptions.from_options({**TINY, "segment_s": 2.0}),
            progress=False,
        )


def test_package_saves_as_a_repo_separation_loads(songs, tmp_path):
    model, _ = train_compact_separator(
        songs, TrainingOptions.from_options(TINY), progress=False
    )
    package = package_model(model, {"note": "test"})
    dataset = DemucsRepoDataset(str(tmp_path / "repo"), "compact")
    dataset.save(package)
    assert dataset.load()["training_args"] == {"note": "test"}
    loaded = load_separator(SeparatorSpec("local", "compact", str(tmp_path / "repo")))
    mix = torch.from_numpy(songs[0].sum(axis=0)[None, :, :4000].copy())
    with torch.no_grad():
        assert torch.allclose(loaded.model(mix), model(mix), atol=1e-6)


def test_evaluation_scores_model_and_mix_floor(songs):
    model, _ = train_compact_separator(
        songs, TrainingOptions.from_options(TINY), progress=False
    )
    held_out = {"a": songs[0], "b": songs[1]}
    report = evaluate_separator_sdr(model, held_out, ApplyOptions())
    assert report["tracks"] == 2 and set(report["sources"]) == set(SOURCES)
    floor = np.mean(
        [
            sdr(song, np.broadcast_to(song.sum(0), song.shape))[1]
            for song in held_out.values()
        ]
    )
    assert report["sources"]["bass"]["floor_db"] == pytest.approx(floor, abs=1e-6)
    assert all(np.isfinite(v["model_db"]) for v in report["sources"].values())


def test_losses_against_hand_computed_values():
    sources = torch.ones(2, 4, 1, 10)
    weights = torch.tensor([1.0, 1.0, 2.0, 0.0])
    half = 0.5 * sources
    # minus the SDR of half of every source: -10 log10(1 / 0.25)
    assert float(separation_loss(half, sources, "sdr", weights)) == pytest.approx(
        -10 * np.log10(4), abs=1e-4
    )
    assert float(separation_loss(half, sources, "l1", weights)) == pytest.approx(0.5)
    estimate = sources.clone()
    estimate[:, 2] = 0.0  # only "other" is wrong, by 1 everywhere, with weight 2
    assert float(separation_loss(estimate, sources, "weighted_l1", weights)) == 0.5


def test_auto_source_weights_favour_quiet_sources(songs):
    weights = source_weights(songs, TrainingOptions.from_options(TINY))
    assert float(weights.mean()) == pytest.approx(1.0)
    levels = np.mean([np.abs(song).mean(axis=(1, 2)) for song in songs], axis=0)
    assert int(weights.argmax()) == int(levels.argmin())
    with pytest.raises(ValueError, match="4 positive numbers"):
        source_weights(
            songs, TrainingOptions.from_options({**TINY, "source_weights": [1, 2]})
        )
    with pytest.raises(ValueError, match="not one of"):
        TrainingOptions.from_options({**TINY, "loss": "mse"})
