"""``python -m emomucs.prune``: lists by default, deletes only what it listed."""

from __future__ import annotations

import os
import shutil
from functools import partial
from pathlib import Path

import numpy as np
from kedro.io import Version

from emomucs import SOURCES
from emomucs.audio import AudioSet, LazyAudio
from emomucs.datasets import AudioSetDataset
from emomucs.prune import (
    RETIRED,
    Deletion,
    current_key_parts,
    freed_bytes,
    main,
    old_versions,
    size_of,
    stale_cache_entries,
)
from emomucs.separation.cache import StemsCache

VERSIONS = [f"2026-0{m}-01T00.00.00.000Z" for m in (1, 2, 3)]


def _stems(separator: str, value: float) -> AudioSet:
    audio = {1: np.full((4, 1, 100), value, np.float32)}
    return AudioSet(
        8000, audio, ("drums", "bass", "other", "vocals"), {"separator": separator}
    )


def _project(root: Path) -> dict[str, Path]:
    """Three stems versions (the first two identical, so hard-linked) and a cache
    holding entries of the current separator, of another one, of the old format and
    a temporary left by a killed run."""
    (root / "conf" / "base").mkdir(parents=True)
    (root / "conf" / "local").mkdir()
    (root / "conf" / "base" / "catalog.yml").write_text(
        "stems:\n  type: emomucs.datasets.AudioSetDataset\n"
        "  filepath: data/03_primary/stems.npz\n  versioned: true\n"
    )
    (root / "conf" / "base" / "parameters.yml").write_text(
        "separation:\n  cache_dir: data/03_primary/stems_cache\n"
    )
    stems = root / "data" / "03_primary" / "stems.npz"
    for version, value in zip(VERSIONS, (0.25, 0.25, 0.5), strict=True):
        AudioSetDataset(str(stems), version=Version(None, version)).save(
            _stems("current", value)
        )
    cache = StemsCache(root / "data" / "03_primary" / "stems_cache")
    array = np.linspace(-1, 1, 400, dtype=np.float32).reshape(4, 1, 100)
    cache.save(1, "a" * 32, array, "current")
    cache.save(1, "b" * 32, array, "another")
    np.save(cache.directory / f"1-{'c' * 32}.npy", array)
    (cache.directory / ".1-partial.tmp").write_bytes(b"half")
    return {"stems": stems, "cache": cache.directory}


def _listing(root: Path) -> set[str]:
    return {
        str(path.relative_to(root))
        for path in (root / "data").rglob("*")
        if path.is_file()
    }


def test_dry_run_lists_and_deletes_nothing(tmp_path, capsys):
    paths = _project(tmp_path)
    before = _listing(tmp_path)
    assert main(["--project", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert _listing(tmp_path) == before
    for version in VERSIONS[:2]:
        assert f"stems.npz/{version}" in out
    assert VERSIONS[2] not in out
    assert f"1-{'b' * 32}.npz" in out and "another" in out
    assert f"1-{'c' * 32}.npy" in out and ".1-partial.tmp" in out
    assert f"1-{'a' * 32}.npz" not in out
    # the two old versions share one file: it is freed once, with the cache files
    shared = (paths["stems"] / VERSIONS[0] / "stems.npz").stat().st_size
    cache_bytes = sum(
        (paths["cache"] / name).stat().st_size
        for name in (f"1-{'b' * 32}.npz", f"1-{'c' * 32}.npy", ".1-partial.tmp")
    )
    assert "5 paths; would free (run with --delete)" in out
    plan = old_versions(tmp_path / "data", 1) + stale_cache_entries(
        paths["cache"], "current"
    )
    assert len(plan) == 5 and freed_bytes(plan) == shared + cache_bytes
    listed = [
        Deletion(paths["stems"] / VERSIONS[0], ""),
        Deletion(paths["stems"] / VERSIONS[1], ""),
    ]
    assert freed_bytes(listed) == shared
    assert freed_bytes(listed[:1]) == 0  # its file lives on in the second version


def test_delete_removes_exactly_what_the_dry_run_listed(tmp_path):
    paths = _project(tmp_path)
    before = _listing(tmp_path)
    assert main(["--project", str(tmp_path), "--delete"]) == 0
    after = _listing(tmp_path)
    kept_cache = f"data/03_primary/stems_cache/1-{'a' * 32}.npz"
    newest = f"data/03_primary/stems.npz/{VERSIONS[2]}/stems.npz"
    assert {kept_cache, newest} <= after
    removed = before - after
    assert removed == {
        f"data/03_primary/stems.npz/{VERSIONS[0]}/stems.npz",
        f"data/03_primary/stems.npz/{VERSIONS[1]}/stems.npz",
        f"data/03_primary/stems_cache/1-{'b' * 32}.npz",
        f"data/03_primary/stems_cache/1-{'c' * 32}.npy",
        "data/03_primary/stems_cache/.1-partial.tmp",
    }
    assert sorted(os.listdir(paths["stems"])) == [VERSIONS[2]]
    loaded = AudioSetDataset(str(paths["stems"]), version=Version(None, None)).load()
    assert loaded.audio[1][0, 0, 0] == 0.5
    cached = StemsCache(paths["cache"]).load(1, "a" * 32)
    assert cached is not None and cached.shape == (4, 1, 100)


def test_keep_two_versions_and_an_explicit_separator(tmp_path, capsys):
    paths = _project(tmp_path)
    main(["--project", str(tmp_path), "--keep", "2", "--separator", "another"])
    out = capsys.readouterr().out
    assert VERSIONS[0] in out and VERSIONS[1] not in out
    assert f"1-{'a' * 32}.npz" in out and f"1-{'b' * 32}.npz" not in out
    assert (paths["cache"] / f"1-{'a' * 32}.npz").exists()  # still a dry run


def test_kedro_prune_is_the_same_command(tmp_path):
    from click.testing import CliRunner

    from emomucs.cli import cli

    _project(tmp_path)
    result = CliRunner().invoke(cli, ["prune", "--project", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "5 paths; would free (run with --delete)" in result.output
    assert len(list((tmp_path / "data" / "03_primary" / "stems.npz").iterdir())) == 3


def _entry_parts(separator: str, clip: str, code: str | None = None) -> dict:
    parts = {
        **StemsCache.key_parts(1, clip, separator, {"shifts": 0}),
        **current_key_parts(),
        "device": "cpu",
    }
    return parts if code is None else {**parts, "code": code}


def _linked_project(root: Path) -> dict:
    """Per-track ``stems`` versions linking the cache, as the separation saves them:
    the first by another separator, the second by the current one; the cache also
    holds an entry of older separation code and one of a killed current run."""
    paths = _project(root)
    for version in VERSIONS:
        shutil.rmtree(paths["stems"] / version)
    for entry in paths["cache"].iterdir():
        entry.unlink()
    cache = StemsCache(paths["cache"])
    rng = np.random.default_rng(0)
    keys = {}
    for name, separator, code in (
        ("another", "another", None),
        ("current", "current", None),
        ("old_code", "current", "0ld0ld0ld0ld"),
        ("killed_run", "current", None),
    ):
        parts = _entry_parts(separator, name, code)
        keys[name] = StemsCache.digest(parts)
        audio = rng.standard_normal((4, 1, 100)).astype(np.float32)
        cache.save(1, keys[name], audio, separator, parts)
    for version, name in zip(VERSIONS[:2], ("another", "current"), strict=True):
        entry = cache.path(1, keys[name])
        audio = LazyAudio(
            {1: partial(cache.require, 1, keys[name])}, {1: (4, 1, 100)}, {1: entry}
        )
        AudioSetDataset(
            str(paths["stems"]), version=Version(None, version), layout="per_track"
        ).save(AudioSet(8000, audio, SOURCES, {"separator": name}))
    paths["entries"] = {name: cache.path(1, key) for name, key in keys.items()}
    return paths


def test_prune_deletes_what_no_kept_version_links_and_no_run_reuses(tmp_path, capsys):
    paths = _linked_project(tmp_path)
    entries = paths["entries"]
    newest = paths["stems"] / VERSIONS[1]
    expected = StemsCache(paths["cache"]).load(1, entries["current"].stem[2:])
    assert (newest / "stems.tracks" / "1.npz").stat().st_ino == (
        entries["current"].stat().st_ino
    )
    main(["--project", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"stems.npz/{VERSIONS[0]}" in out
    assert entries["another"].name in out and "another separator" in out
    assert (
        entries["old_code"].name in out
        and "other code 0ld0ld0ld0ld (this checkout: " in out
    )
    for kept in ("current", "killed_run"):
        assert entries[kept].name not in out
    # the old version's track and the other separator's entry are one file
    old_version = paths["stems"] / VERSIONS[0]
    freed = size_of(old_version) + entries["old_code"].stat().st_size
    assert f"would free (run with --delete) {freed / 1000:.1f} kB" in out

    main(["--project", str(tmp_path), "--delete"])
    assert not old_version.exists()
    assert sorted(p.name for p in paths["cache"].iterdir()) == sorted(
        entries[name].name for name in ("current", "killed_run")
    )
    loaded = AudioSetDataset(str(paths["stems"]), version=Version(None, None)).load()
    assert loaded.attrs == {"separator": "current"}
    np.testing.assert_array_equal(loaded.audio[1], expected)


def test_prune_never_deletes_an_entry_a_kept_version_links(tmp_path, capsys):
    paths = _linked_project(tmp_path)
    entries = paths["entries"]
    # both versions kept: the other separator's entry stays, as it frees nothing
    main(["--project", str(tmp_path), "--keep", "2"])
    out = capsys.readouterr().out
    assert entries["another"].name not in out and entries["old_code"].name in out
    # the newest version's entry is of another separator than the one kept
    main(["--project", str(tmp_path), "--separator", "another", "--delete"])
    out = capsys.readouterr().out
    assert entries["current"].exists() and not entries["killed_run"].exists()
    assert entries["killed_run"].name in out
    loaded = AudioSetDataset(str(paths["stems"]), version=Version(None, None)).load()
    assert loaded.audio[1].shape == (4, 1, 100)


def test_prune_deletes_a_killed_save_but_not_a_save_in_progress(tmp_path, capsys):
    paths = _project(tmp_path)
    killed = paths["stems"] / "2026-02-15T00.00.00.000Z"
    running = paths["stems"] / "2026-04-01T00.00.00.000Z"
    for folder in (killed, running):
        (folder / "stems.tracks").mkdir(parents=True)
        (folder / "stems.tracks" / "1.npz").write_bytes(b"a track")
    main(["--project", str(tmp_path)])
    out = capsys.readouterr().out
    assert "2026-02-15T00.00.00.000Z  (a killed save: no stems.npz in it)" in out
    assert running.name not in out and VERSIONS[2] not in out  # still the newest
    assert "6 paths" in out


def _retired_versions(root: Path) -> dict[str, Path]:
    """Two versions each of the clips and the mix, as runs before 2026-12-02 stored
    them."""
    folders = {}
    for name, relative in RETIRED.items():
        folder = root / relative
        for version, value in zip(VERSIONS[:2], (0.25, 0.5), strict=True):
            AudioSetDataset(str(folder), version=Version(None, version)).save(
                AudioSet(8000, {1: np.full((2, 100), value, np.float32)})
            )
        folders[name] = folder
    return folders


def test_prune_deletes_every_version_of_what_is_no_longer_stored(tmp_path, capsys):
    paths = _project(tmp_path)
    retired = _retired_versions(tmp_path)
    main(["--project", str(tmp_path)])
    out = capsys.readouterr().out
    for name, folder in retired.items():
        for version in VERSIONS[:2]:  # the newest too: no run reads it
            assert f"{folder.name}/{version}  ({name} is no longer stored" in out
    main(["--project", str(tmp_path), "--delete"])
    assert not any(any(folder.iterdir()) for folder in retired.values())
    assert sorted(os.listdir(paths["stems"])) == [VERSIONS[2]]  # the rest as before


def test_prune_keeps_the_newest_clips_when_the_conf_stores_them_again(tmp_path, capsys):
    _project(tmp_path)
    retired = _retired_versions(tmp_path)
    (tmp_path / "conf" / "local" / "catalog.yml").write_text(
        "clips:\n  type: emomucs.datasets.AudioSetDataset\n"
        f"  filepath: {RETIRED['clips']}\n  versioned: true\n"
    )
    main(["--project", str(tmp_path), "--delete"])
    assert sorted(os.listdir(retired["clips"])) == [VERSIONS[1]]
    assert os.listdir(retired["mix"]) == []
