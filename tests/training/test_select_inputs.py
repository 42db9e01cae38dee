"""Selecting a variant's inputs from a feature set."""

import pytest
import torch

from emomucs.training.data import select_inputs


def _features(n_tracks=5, sources=("drums", "bass", "other", "vocals")):
    values = torch.arange(n_tracks * len(sources) * 6, dtype=torch.float32)
    return {
        "representation": "log_mel",
        "sources": list(sources),
        "music_ids": torch.tensor([10, 20, 30, 40, 50][:n_tracks]),
        "values": values.reshape(n_tracks, len(sources), 2, 3),
        "sample_rate": 22050,
        "settings": {},
    }


def test_every_track_and_source_in_order_is_the_set_itself_not_a_copy():
    features = _features()
    x = select_inputs(features, features["sources"], [10, 20, 30, 40, 50])
    assert x.data_ptr() == features["values"].data_ptr()
    assert torch.equal(x, features["values"])


@pytest.mark.parametrize(
    ("sources", "ids"),
    [
        (["drums", "bass", "other", "vocals"], [30, 10]),  # tracks: some, reordered
        (["vocals", "drums"], [10, 20, 30, 40, 50]),  # sources: some, reordered
        (["bass"], [50, 40, 30, 20, 10]),
    ],
)
def test_a_selection_gives_those_tracks_and_sources_in_that_order(sources, ids):
    features = _features()
    x = select_inputs(features, sources, ids)
    rows = [[10, 20, 30, 40, 50].index(i) for i in ids]
    columns = [features["sources"].index(s) for s in sources]
    expected = torch.stack(
        [torch.stack([features["values"][r, c] for c in columns]) for r in rows]
    )
    assert torch.equal(x, expected)
    assert x.data_ptr() != features["values"].data_ptr()


def test_a_missing_track_or_source_is_named():
    features = _features()
    with pytest.raises(ValueError, match="track 60"):
        select_inputs(features, ["drums"], [10, 60])
    with pytest.raises(ValueError, match="'piano'"):
        select_inputs(features, ["piano"], [10])
