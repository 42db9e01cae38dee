"""Reading multitrack songs and splitting them by song."""

from __future__ import annotations

import numpy as np
import pytest

from emomucs import SOURCES
from emomucs.separation import group_stems, load_track, split_tracks


def _loader(array, rate):
    return lambda: (array, rate)


def test_group_stems_ignores_mixture_files_and_names_incomplete_tracks():
    mono = np.zeros((1, 10), np.float32)
    stems = {f"a/{source}": _loader(mono, 8000) for source in SOURCES}
    stems["a/mixture"] = _loader(mono, 8000)
    assert list(group_stems(stems)) == ["a"]
    assert set(group_stems(stems)["a"]) == set(SOURCES)
    del stems["a/bass"]
    with pytest.raises(ValueError, match="track a: no bass stem"):
        group_stems(stems)


def test_load_track_resamples_upmixes_and_trims_to_the_shortest():
    loaders = {
        source: _loader(np.full((1, 16000 + index), index, np.float32), 16000)
        for index, source in enumerate(SOURCES)
    }
    track = load_track("t", loaders, 8000, 2)
    assert track.shape == (4, 2, 8000) and track.dtype == np.float32
    assert np.allclose(track[3, :, 100:-100], 3.0, atol=1e-3)


def test_load_track_refuses_sources_of_different_songs():
    loaders = {
        source: _loader(
            np.zeros((2, 8000 * (2 if source == "vocals" else 1)), np.float32), 8000
        )
        for source in SOURCES
    }
    with pytest.raises(ValueError, match="track t: sources differ in length"):
        load_track("t", loaders, 8000, 2)


def test_split_is_seeded_disjoint_and_complete():
    tracks = [f"song{index}" for index in range(10)]
    split = split_tracks(tracks, 0.2, seed=3)
    assert split == split_tracks(list(reversed(tracks)), 0.2, seed=3)
    assert len(split["valid"]) == 2
    assert sorted(split["train"] + split["valid"]) == sorted(tracks)
    assert split != split_tracks(tracks, 0.2, seed=4)
    with pytest.raises(ValueError, match="at least one training song"):
        split_tracks(["only"], 0.2, seed=0)
