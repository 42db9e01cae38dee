"""The custom datasets: versioned AudioSet npz files and audio folders."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from kedro.io import DatasetError, Version

from emomucs.audio import AudioSet
from emomucs.datasets import AudioFolderDataset, AudioSetDataset, TorchDataset


def _audio_set(value: float, sources=()) -> AudioSet:
    shape = (len(sources), 1, 8) if sources else (2, 8)
    return AudioSet(
        sample_rate=22050,
        audio={3: np.full(shape, value, np.float32), 11: np.zeros(shape, np.float32)},
        sources=tuple(sources),
        attrs={"separator": "oracle"},
    )


def test_audio_set_round_trip(tmp_path):
    dataset = AudioSetDataset(str(tmp_path / "stems.npz"))
    dataset.save(_audio_set(0.5, ("drums", "bass")))
    loaded = dataset.load()
    assert loaded.sample_rate == 22050 and loaded.sources == ("drums", "bass")
    assert loaded.attrs == {"separator": "oracle"} and loaded.music_ids == [3, 11]
    np.testing.assert_array_equal(loaded.audio[3], np.full((2, 1, 8), 0.5, np.float32))


def test_older_version_loads_back_after_a_newer_run(tmp_path):
    path = str(tmp_path / "clips.npz")
    AudioSetDataset(path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(
        _audio_set(0.25)
    )
    AudioSetDataset(path, version=Version(None, "2026-02-01T00.00.00.000Z")).save(
        _audio_set(0.75)
    )
    latest = AudioSetDataset(path, version=Version(None, None)).load()
    older = AudioSetDataset(
        path, version=Version("2026-01-01T00.00.00.000Z", None)
    ).load()
    assert latest.audio[3][0, 0] == 0.75
    assert older.audio[3][0, 0] == 0.25


def test_a_version_identical_to_the_newest_shares_its_file(tmp_path):
    """Reruns save the same clips and stems again: the new version is a hard link to
    the newest one when the bytes match, and a file of its own when they do not."""
    path = tmp_path / "stems.npz"
    versions = [f"2026-0{m}-01T00.00.00.000Z" for m in (1, 2, 3, 4)]
    values = [0.25, 0.25, 0.75, 0.25]
    for version, value in zip(versions, values, strict=True):
        AudioSetDataset(str(path), version=Version(None, version)).save(
            _audio_set(value, ("drums",))
        )
    stats = [(path / v / "stems.npz").stat() for v in versions]
    assert stats[1].st_ino == stats[0].st_ino and stats[0].st_nlink == 2
    assert stats[2].st_ino != stats[1].st_ino  # other data
    assert stats[3].st_ino not in {stats[0].st_ino, stats[2].st_ino}  # newest is 0.75
    for version, value in zip(versions, values, strict=True):
        loaded = AudioSetDataset(str(path), version=Version(version, None)).load()
        assert loaded.audio[3][0, 0, 0] == value


def test_an_unreadable_earlier_version_does_not_stop_a_save(tmp_path):
    path = tmp_path / "stems.npz"
    first, second = "2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"
    AudioSetDataset(str(path), version=Version(None, first)).save(_audio_set(0.5))
    earlier = path / first / "stems.npz"
    earlier.unlink()
    earlier.symlink_to(tmp_path / "gone.npz")  # listed, but cannot be read
    AudioSetDataset(str(path), version=Version(None, second)).save(_audio_set(0.5))
    saved = AudioSetDataset(str(path), version=Version(second, None)).load()
    assert saved.audio[3][0, 0] == 0.5
    assert (path / second / "stems.npz").stat().st_nlink == 1


def test_torch_dataset_versions_share_identical_files(tmp_path):
    path = tmp_path / "features.pt"
    data = {"values": torch.arange(6.0), "sources": ["mix"]}
    for version in ("2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"):
        TorchDataset(str(path), version=Version(None, version)).save(data)
    first, second = (path / v / "features.pt" for v in sorted(os.listdir(path)))
    assert first.stat().st_ino == second.stat().st_ino
    loaded = TorchDataset(str(path), version=Version(None, None)).load()
    assert torch.equal(loaded["values"], data["values"])


def test_audio_set_dataset_refuses_other_types(tmp_path):
    with pytest.raises(DatasetError, match="saves an AudioSet"):
        AudioSetDataset(str(tmp_path / "x.npz")).save({"a": 1})


def test_audio_folder_round_trip_and_missing_folder(tmp_path):
    folder = AudioFolderDataset(str(tmp_path / "stems"))
    assert folder.load() == {}
    tone = np.sin(np.linspace(0, 100, 2205, dtype=np.float32))[None].repeat(2, 0) * 0.5
    folder.save({"12/drums": (tone, 22050), "12/bass": (tone * 0.5, 22050)})
    loaders = folder.load()
    assert sorted(loaders) == ["12/bass", "12/drums"]
    audio, rate = loaders["12/drums"]()
    assert rate == 22050 and audio.shape == (2, 2205)
    np.testing.assert_allclose(audio, tone, atol=1e-4)  # 16-bit quantisation
    assert not list((tmp_path / "stems" / "12").glob(".*"))  # no temporary left over


def test_audio_folder_never_writes_outside_its_root(tmp_path):
    folder = AudioFolderDataset(str(tmp_path / "root"))
    with pytest.raises(DatasetError, match="outside"):
        folder.save({"../escape": (np.zeros((1, 10), np.float32), 8000)})
    assert not (tmp_path / "escape.wav").exists()
