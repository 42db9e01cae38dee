"""Free disk space: old versions of artifacts and stems-cache entries no run will reuse.

Usage (from the project root)::

    python -m emomucs.prune            # dry run: lists what it would delete and the bytes
    python -m emomucs.prune --delete   # deletes it
    python -m emomucs.prune --keep 3   # keep the 3 newest versions of each artifact

What goes:

- versions of every versioned artifact under ``data/`` older than the newest
  ``--keep`` (Kedro writes ``<name>/<timestamp>/<name>``), and version folders a killed
  save left without their artifact, older than the newest whole version;
- every version of an artifact the project stored once and now keeps in memory
  (:data:`RETIRED`: the clips and the mix), unless the conf stores it again;
- entries of the stems cache (``separation.cache_dir``) written by another separator
  than the one of the newest ``stems`` version (or ``--separator``) and those of the
  newest stems of each separator beside it (``hpss.stems``), or by other separation
  code or torch/demucs versions than this checkout's (no run of it reuses them),
  entries of an older cache format (``*.npy``) and temporary files a killed run left
  behind. An entry that a kept version links (``stems`` versions are hard links to
  the cache's entries) stays: deleting it would free nothing.

Identical versions, and ``stems`` versions and the cache entries they link, are hard
links to one file, so the bytes freed count a file only when every one of its links
goes, and deleting a cache entry never makes a kept version unreadable. Nothing
outside ``data/`` and the stems cache is touched; the raw corpus is not versioned and
is never listed.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emomucs.separation.cache import (
    CACHE_FORMAT,
    ENTRY_SUFFIX,
    StemsCache,
    environment,
)

logger = logging.getLogger(__name__)

VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}\.\d{3}Z$")
"""Kedro's version folder names (``2026-12-01T10.02.03.456Z``)."""


RETIRED = {
    "clips": "data/02_intermediate/clips.npz",
    "mix": "data/03_primary/mix.npz",
}
"""Catalog entries stored before 2026-12-02 and kept in memory since (each clip is cut
from its chorus file, each mix track down-mixed, when looked up): no run reads their
versions, which would otherwise stay on disk (241 MB for the default corpus)."""


@dataclass(frozen=True)
class Deletion:
    """A file or version folder to delete and why."""

    path: Path
    reason: str


def versioned_artifacts(data_dir: Path) -> list[Path]:
    """Folders under ``data_dir`` laid out as Kedro versions: ``<name>/<version>/<name>``."""
    found = []
    for folder in sorted(data_dir.rglob("*")):
        if not folder.is_dir():
            continue
        versions = [child for child in folder.iterdir() if VERSION.match(child.name)]
        if versions and any((v / folder.name).exists() for v in versions):
            found.append(folder)
    return found


def old_versions(data_dir: Path, keep: int) -> list[Deletion]:
    """Every version but the newest ``keep`` of each versioned artifact, and version
    folders without the artifact (a killed save) older than the newest whole one.

    A folder without the artifact newer than the newest whole version may be a save
    in progress, so it stays; it is not counted among the kept versions either.
    """
    if keep < 1:
        raise ValueError(f"--keep {keep}: keep at least the newest version")
    deletions = []
    for artifact in versioned_artifacts(data_dir):
        folders = sorted(
            child
            for child in artifact.iterdir()
            if child.is_dir() and VERSION.match(child.name)
        )
        whole = [folder for folder in folders if (folder / artifact.name).exists()]
        for version in whole[:-keep]:
            deletions.append(
                Deletion(version, f"older than the newest {keep} of {artifact.name}")
            )
        for folder in folders:
            if folder not in whole and whole and folder.name < whole[-1].name:
                deletions.append(
                    Deletion(folder, f"a killed save: no {artifact.name} in it")
                )
    return sorted(deletions, key=lambda deletion: deletion.path)


def retired_versions(project: Path, catalog: dict[str, Any]) -> list[Deletion]:
    """Every version of each :data:`RETIRED` artifact the catalog no longer stores
    at that path (a conf that stores it again keeps its versions to ``--keep``)."""
    deletions = []
    for name, relative in RETIRED.items():
        if (catalog.get(name) or {}).get("filepath") == relative:
            continue
        folder = project / relative
        if not folder.is_dir():
            continue
        deletions += [
            Deletion(version, f"{name} is no longer stored (kept in memory)")
            for version in sorted(folder.iterdir())
            if version.is_dir() and VERSION.match(version.name)
        ]
    return deletions


def current_separator(stems_path: Path) -> str | None:
    """The separator identity of the newest ``stems`` version, or None."""
    from emomucs.datasets import AudioSetDataset

    if not stems_path.exists():
        return None
    try:
        from kedro.io.core import Version

        stems = AudioSetDataset(str(stems_path), version=Version(None, None)).load()
    except Exception as error:  # an unreadable artifact must not stop a dry run
        logger.warning("%s: cannot read the separator (%s)", stems_path, error)
        return None
    return stems.attrs.get("separator")


def stale_cache_entries(
    cache_dir: Path,
    separator: str | None,
    also_keep: Iterable[str] = (),
    linked: Collection[tuple[int, int]] = (),
    current: dict[str, Any] | None = None,
) -> list[Deletion]:
    """Cache entries no run with ``separator`` will read back.

    Args:
        cache_dir: The stems cache.
        separator: The main separator's identity; None (no stems saved yet) keeps
            the entries of every separator.
        also_keep: Identities of the separators beside the main one (e.g. the
            harmonic–percussive split's newest ``hpss.stems``).
        linked: ``(device, inode)`` of files that kept versions hold
            (:func:`linked_files`): an entry that is one of them stays.
        current: This checkout's key parts that no run can change (format, code,
            torch, demucs; :func:`current_key_parts`): an entry written with other
            ones is never read again. None skips this check.
    """
    kept = {separator, *also_keep}
    linked = set(linked)
    if not cache_dir.is_dir():
        return []
    deletions = []
    for entry in sorted(cache_dir.iterdir()):
        if not entry.is_file():
            continue
        if entry.name.startswith("."):
            deletions.append(Deletion(entry, "temporary file of an interrupted write"))
        elif entry.suffix == ".npy":
            deletions.append(Deletion(entry, "older cache format (float32 .npy)"))
        elif entry.suffix == ENTRY_SUFFIX:
            stat = entry.stat()
            if (stat.st_dev, stat.st_ino) in linked:
                continue  # a kept version holds it: deleting frees nothing
            reason = _stale_reason(entry, separator, kept, current)
            if reason is not None:
                deletions.append(Deletion(entry, reason))
    return deletions


def _stale_reason(
    entry: Path,
    separator: str | None,
    kept: set[str | None],
    current: dict[str, Any] | None,
) -> str | None:
    if separator is not None:
        written_by = StemsCache.separator_of(entry)
        if written_by not in kept:
            return f"written by another separator: {written_by}"
    if current:
        parts = StemsCache.key_parts_of(entry)
        if parts is not None:
            changed = [
                name for name, value in current.items() if parts.get(name) != value
            ]
            if changed:
                return (
                    "written by other "
                    + ", ".join(
                        f"{name} {parts.get(name)} (this checkout: {current[name]})"
                        for name in changed
                    )
                    + ": no run of it reads the entry"
                )
    return None


def current_key_parts() -> dict[str, Any]:
    """The stems-cache key parts of this checkout that no setting changes: the cache
    format, the separation code's fingerprint, torch's and demucs' versions."""
    parts = environment("cpu")
    parts.pop("device")  # the device is a setting: entries of either may be reused
    return {"format": CACHE_FORMAT, **parts}


def linked_files(data_dir: Path, leaving: Iterable[Path]) -> set[tuple[int, int]]:
    """``(device, inode)`` of the hard-linked files under ``data_dir`` that stay
    (outside ``leaving``: the paths to delete and the stems cache itself)."""
    leaving = [path.resolve() for path in leaving]
    found = set()
    for file in data_dir.rglob("*"):
        if file.is_symlink() or not file.is_file():
            continue
        stat = file.stat()
        if stat.st_nlink < 2:
            continue
        resolved = file.resolve()
        if any(resolved.is_relative_to(path) for path in leaving):
            continue
        found.add((stat.st_dev, stat.st_ino))
    return found


def _files(path: Path) -> Iterable[Path]:
    if path.is_dir():
        yield from (p for p in path.rglob("*") if p.is_file() or p.is_symlink())
    else:
        yield path


def freed_bytes(deletions: Sequence[Deletion]) -> int:
    """Bytes deleting these frees: a hard-linked file counts when all its links go."""
    links: dict[tuple[int, int], list[int]] = {}
    for deletion in deletions:
        for file in _files(deletion.path):
            stat = file.lstat()
            entry = links.setdefault((stat.st_dev, stat.st_ino), [0, 0, 0])
            entry[0] += 1
            entry[1] = stat.st_nlink
            entry[2] = stat.st_size
    return sum(size for count, nlink, size in links.values() if count >= nlink)


def size_of(path: Path) -> int:
    return sum(file.lstat().st_size for file in _files(path))


def delete(deletions: Sequence[Deletion]) -> None:
    """Delete the files and folders (leaves first); a vanished path is skipped."""
    for deletion in deletions:
        path = deletion.path
        if path.is_dir() and not path.is_symlink():
            for file in sorted(path.rglob("*"), reverse=True):
                if file.is_dir() and not file.is_symlink():
                    file.rmdir()
                else:
                    file.unlink(missing_ok=True)
            path.rmdir()
        else:
            path.unlink(missing_ok=True)


def _settings(
    project: Path, env: str | None
) -> tuple[Path | None, Path, dict[str, Any]]:
    """The stems cache folder, the ``stems`` file path and the catalog config from
    the project's conf."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        conf_source=str(project / "conf"),
        base_env="base",
        default_run_env=env or "local",
    )
    cache_dir = loader["parameters"]["separation"].get("cache_dir")
    catalog = loader["catalog"]
    stems = catalog["stems"]["filepath"]
    return (project / cache_dir if cache_dir else None), project / stems, catalog


def _other_separators(project: Path, stems_path: Path) -> list[str]:
    """Identities of the newest stems of each separator beside the main one
    (``<namespace>.stems``, next to ``stems``), so their cache entries stay."""
    from emomucs.pipelines.separation.pipeline import OTHER_SEPARATORS

    found = []
    for namespace in OTHER_SEPARATORS:
        identity = current_separator(stems_path.parent / namespace / stems_path.name)
        if identity is not None:
            found.append(identity)
    return found


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1000
    return f"{value:.1f} GB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emomucs.prune",
        description="List (default) or delete old artifact versions and stale "
        "stems-cache entries.",
    )
    parser.add_argument("--project", type=Path, default=Path.cwd())
    parser.add_argument("--env", default=None, help="Kedro environment of the conf")
    parser.add_argument("--keep", type=int, default=1, help="newest versions to keep")
    parser.add_argument(
        "--separator",
        default=None,
        help="keep cache entries of this separator identity (default: the newest "
        "stems version's)",
    )
    parser.add_argument("--delete", action="store_true", help="delete, not just list")
    args = parser.parse_args(argv)

    project = args.project.resolve()
    cache_dir, stems_path, catalog = _settings(project, args.env)
    separator = args.separator or current_separator(stems_path)
    retired = retired_versions(project, catalog)
    gone = {deletion.path for deletion in retired}
    deletions = [
        deletion
        for deletion in old_versions(project / "data", args.keep)
        if deletion.path not in gone
    ] + retired
    if cache_dir is not None:
        linked = linked_files(
            project / "data", [deletion.path for deletion in deletions] + [cache_dir]
        )
        deletions += stale_cache_entries(
            cache_dir,
            separator,
            _other_separators(project, stems_path),
            linked,
            current_key_parts(),
        )
    for deletion in deletions:
        shown = deletion.path.relative_to(project)
        print(f"{_human(size_of(deletion.path)):>10}  {shown}  ({deletion.reason})")  # noqa: T201
    freed = freed_bytes(deletions)
    verb = "freed" if args.delete else "would free (run with --delete)"
    print(f"{len(deletions)} paths; {verb} {_human(freed)}")  # noqa: T201
    if separator is None and cache_dir is not None:
        print("no stems saved yet: cache entries of every separator kept")  # noqa: T201
    if args.delete:
        delete(deletions)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
