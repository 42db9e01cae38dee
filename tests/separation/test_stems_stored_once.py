"""The stems take their disk space once: a ``stems`` version hard-links the cache."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from kedro.io import DatasetError, Version

from emomucs import SOURCES
from emomucs.audio import AudioSet
from emomucs.datasets import AudioSetDataset
from emomucs.separation import (
    ApplyOptions,
    SeparatorSpec,
    StemsCache,
    load_separator,
    separate,
    separate_tracks,
)

VERSIONS = [f"2026-0{m}-01T00.00.00.000Z" for m in (1, 2, 3)]


@pytest.fixture
def separator(tiny_repo):
    return load_separator(SeparatorSpec("local", "tiny", str(tiny_repo)))


def _clips(count: int = 3) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        10 + index: (0.1 * rng.standard_normal((2, 8000))).astype(np.float32)
        for index in range(count)
    }


def _separate(separator, cache: StemsCache, clips=None) -> AudioSet:
    stems = separate_tracks(
        clips or _clips(),
        8000,
        separator,
        8000,
        ApplyOptions(batch_size=1),
        cache,
        progress=False,
    )
    return AudioSet(8000, stems, SOURCES, {"separator": separator.identity})


def _dataset(path: Path, version: str | None = None, save: bool = True):
    versions = Version(None, version) if save else Version(version, None)
    return AudioSetDataset(str(path), version=versions, layout="per_track")


def _inodes(folder: Path) -> dict[tuple[int, int], int]:
    """``(device, inode) -> size`` of every file under ``folder``, each once."""
    found = {}
    for file in folder.rglob("*"):
        if file.is_file():
            stat = file.stat()
            found[(stat.st_dev, stat.st_ino)] = stat.st_size
    return found


def _track_files(path: Path, version: str) -> list[Path]:
    return sorted((path / version / "stems.tracks").iterdir())


def test_a_killed_then_resumed_separation_is_saved_as_links_to_the_cache(
    separator, tmp_path, monkeypatch
):
    cache = StemsCache(tmp_path / "data" / "stems_cache")
    real = separate.separate_batch
    calls: list[int] = []

    def killed_at_the_third_track(model, batch, *args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(batch))
        return real(model, batch, *args, **kwargs)

    monkeypatch.setattr(separate, "separate_batch", killed_at_the_third_track)
    with pytest.raises(KeyboardInterrupt):
        _separate(separator, cache)
    monkeypatch.setattr(separate, "separate_batch", real)
    stems = _separate(separator, cache)  # resumes: one track left to separate

    path = tmp_path / "data" / "stems.npz"
    _dataset(path, VERSIONS[0]).save(stems)
    entries = sorted(cache.directory.iterdir())
    tracks = _track_files(path, VERSIONS[0])
    assert [f.name for f in tracks] == ["10.npz", "11.npz", "12.npz"]
    for track, entry in zip(tracks, entries, strict=True):
        assert track.stat().st_ino == entry.stat().st_ino
        assert track.stat().st_nlink == 2
    # the stems' bytes are on disk once: data/ is the cache plus a small manifest
    total = sum(_inodes(tmp_path / "data").values())
    cached = sum(_inodes(cache.directory).values())
    manifest = (path / VERSIONS[0] / "stems.npz").stat().st_size
    assert total == cached + manifest and manifest < 4096

    loaded = _dataset(path, VERSIONS[0], save=False).load()
    assert loaded.music_ids == [10, 11, 12] and loaded.sources == SOURCES
    assert loaded.attrs == stems.attrs and loaded.sample_rate == 8000
    for music_id in stems.music_ids:
        assert loaded.shape(music_id) == stems.shape(music_id) == (4, 1, 8000)
        np.testing.assert_array_equal(loaded.audio[music_id], stems.audio[music_id])


def test_a_rerun_adds_no_audio_bytes_and_versions_outlive_the_cache(
    separator, tmp_path
):
    cache = StemsCache(tmp_path / "data" / "stems_cache")
    path = tmp_path / "data" / "stems.npz"
    first = _separate(separator, cache)
    expected = {music_id: first.audio[music_id] for music_id in first.music_ids}
    _dataset(path, VERSIONS[0]).save(first)
    before = _inodes(tmp_path / "data")
    _dataset(path, VERSIONS[1]).save(_separate(separator, cache))
    after = _inodes(tmp_path / "data")
    assert set(after) == set(before)  # even the manifest is shared
    assert (path / VERSIONS[1] / "stems.npz").stat().st_nlink == 2

    for entry in cache.directory.iterdir():
        entry.unlink()  # "deleting the cache only costs time"
    for version in VERSIONS[:2]:
        loaded = _dataset(path, version, save=False).load()
        for music_id, audio in expected.items():
            np.testing.assert_array_equal(loaded.audio[music_id], audio)


def test_stems_without_a_cache_entry_are_written_and_shared_by_equal_reruns(
    tmp_path,
):
    """Oracle stems and a disabled cache hand over arrays, not files."""
    rng = np.random.default_rng(1)
    audio = {7: rng.standard_normal((4, 1, 500)).astype(np.float32)}
    path = tmp_path / "stems.npz"
    for version in VERSIONS[:2]:
        _dataset(path, version).save(AudioSet(8000, audio, SOURCES))
    first, second = (_track_files(path, v)[0] for v in VERSIONS[:2])
    assert first.stat().st_ino == second.stat().st_ino
    changed = {7: audio[7] * 0.5}
    _dataset(path, VERSIONS[2]).save(AudioSet(8000, changed, SOURCES))
    assert _track_files(path, VERSIONS[2])[0].stat().st_nlink == 1
    loaded = _dataset(path, VERSIONS[2], save=False).load()
    peak = np.abs(changed[7]).max(axis=-1, keepdims=True)
    assert (np.abs(loaded.audio[7] - changed[7]) <= peak / 32767).all()


def test_where_no_hard_link_is_possible_the_tracks_are_copied_with_one_warning(
    separator, tmp_path, monkeypatch, caplog
):
    cache = StemsCache(tmp_path / "stems_cache")
    stems = _separate(separator, cache)

    def no_links(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "stems.npz"
    with caplog.at_level(logging.WARNING, logger="emomucs.datasets"):
        _dataset(path, VERSIONS[0]).save(stems)
    warnings = [r for r in caplog.records if "could not be hard-linked" in r.message]
    assert len(warnings) == 1 and "3 tracks" in warnings[0].getMessage()
    for track in _track_files(path, VERSIONS[0]):
        assert track.stat().st_nlink == 1
    loaded = _dataset(path, VERSIONS[0], save=False).load()
    for music_id in stems.music_ids:
        np.testing.assert_array_equal(loaded.audio[music_id], stems.audio[music_id])


def test_a_deleted_track_file_gives_an_error_naming_it_and_the_fix(separator, tmp_path):
    path = tmp_path / "stems.npz"
    _dataset(path, VERSIONS[0]).save(_separate(separator, StemsCache(None)))
    (path / VERSIONS[0] / "stems.tracks" / "11.npz").unlink()
    with pytest.raises(DatasetError, match=r"tracks \[11\].*--pipeline=separation"):
        _dataset(path, VERSIONS[0], save=False).load()


def test_a_killed_save_leaves_the_newest_whole_version_loadable(tmp_path):
    path = tmp_path / "stems.npz"
    audio = {1: np.ones((4, 1, 50), np.float32), 2: np.ones((4, 1, 50), np.float32)}
    _dataset(path, VERSIONS[0]).save(AudioSet(8000, audio, SOURCES))

    class Killed(dict):
        def __getitem__(self, music_id):
            if music_id == 2:
                raise KeyboardInterrupt
            return super().__getitem__(music_id)

    with pytest.raises(KeyboardInterrupt):
        _dataset(path, VERSIONS[1]).save(AudioSet(8000, Killed(audio), SOURCES))
    assert (path / VERSIONS[1] / "stems.tracks" / "1.npz").exists()
    latest = AudioSetDataset(str(path), version=Version(None, None)).load()
    assert latest.music_ids == [1, 2]  # the first version: the second has no manifest


def test_single_file_versions_written_before_still_load(separator, tmp_path):
    path = tmp_path / "stems.npz"
    stems = _separate(separator, StemsCache(tmp_path / "cache"))
    AudioSetDataset(str(path), version=Version(None, VERSIONS[0])).save(stems)
    _dataset(path, VERSIONS[1]).save(stems)
    assert (path / VERSIONS[0] / "stems.npz").stat().st_size > 10_000
    assert not (path / VERSIONS[0] / "stems.tracks").exists()
    old = _dataset(path, VERSIONS[0], save=False).load()
    new = _dataset(path, VERSIONS[1], save=False).load()
    for music_id in stems.music_ids:
        np.testing.assert_array_equal(old.audio[music_id], new.audio[music_id])


def test_stems_separated_on_a_dask_cluster_are_links_to_the_cache_too(
    separator, tmp_path
):
    """The fan-out path: workers write the entries, this process links them."""
    from distributed import Client, LocalCluster

    cache = StemsCache(tmp_path / "stems_cache")
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        stems = _separate(separator, cache)
    path = tmp_path / "stems.npz"
    _dataset(path, VERSIONS[0]).save(stems)
    entries = {entry.stat().st_ino for entry in cache.directory.iterdir()}
    tracks = _track_files(path, VERSIONS[0])
    assert len(entries) == 3 and {t.stat().st_ino for t in tracks} == entries
    alone = _separate(separator, StemsCache(None))
    loaded = _dataset(path, VERSIONS[0], save=False).load()
    for music_id in alone.music_ids:
        peak = np.abs(alone.audio[music_id]).max(axis=-1, keepdims=True)
        error = np.abs(loaded.audio[music_id] - alone.audio[music_id])
        assert (error <= peak / 32767).all()  # 16-bit storage, same separation
