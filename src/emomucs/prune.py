"""Free disk space: old versions of artifacts and stems-cache entries no run will reuse.

Usage (from the project root)::

    python -m emomucs.prune            # dry run: lists what it would delete and the bytes
    python -m emomucs.prune --delete   # deletes it
    python -m emomucs.prune --keep 3   # keep the 3 newest versions of each artifact

What goes:

- versions of every versioned artifact under ``data/`` older than the newest
  ``--keep`` (Kedro writes ``<name>/<timestamp>/<name>``);
- entries of the stems cache (``separation.cache_dir``) written by another separator
  than the one of the newest ``stems`` version (or ``--separator``) and those of the
  newest stems of each separator beside it (``hpss.stems``), entries of an
  older cache format (``*.npy``) and temporary files a killed run left behind.

Identical versions are hard links to one file, so the bytes freed count a file only
when every one of its links goes. Nothing outside ``data/`` and the stems cache is
touched; the raw corpus is not versioned and is never listed.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from emomucs.separation.cache import ENTRY_SUFFIX, StemsCache

logger = logging.getLogger(__name__)

VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}\.\d{3}Z$")
"""Kedro's version folder names (``2026-12-01T10.02.03.456Z``)."""


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
    """Every version but the newest ``keep`` of each versioned artifact."""
    if keep < 1:
        raise ValueError(f"--keep {keep}: keep at least the newest version")
    deletions = []
    for artifact in versioned_artifacts(data_dir):
        versions = sorted(
            child
            for child in artifact.iterdir()
            if child.is_dir() and VERSION.match(child.name)
        )
        for version in versions[:-keep]:
            deletions.append(
                Deletion(version, f"older than the newest {keep} of {artifact.name}")
            )
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
    cache_dir: Path, separator: str | None, also_keep: Iterable[str] = ()
) -> list[Deletion]:
    """Cache entries no run with ``separator`` will read back.

    With ``separator`` None (no stems saved yet), only old-format entries and
    temporaries are listed. ``also_keep``: identities of the separators beside the
    main one (e.g. the harmonic–percussive split's newest ``hpss.stems``).
    """
    kept = {separator, *also_keep}
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
        elif entry.suffix == ENTRY_SUFFIX and separator is not None:
            written_by = StemsCache.separator_of(entry)
            if written_by not in kept:
                deletions.append(
                    Deletion(entry, f"written by another separator: {written_by}")
                )
    return deletions


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


def _stems_settings(project: Path, env: str | None) -> tuple[Path | None, Path]:
    """The stems cache folder and the ``stems`` file path from the project's conf."""
    from kedro.config import OmegaConfigLoader

    loader = OmegaConfigLoader(
        conf_source=str(project / "conf"),
        base_env="base",
        default_run_env=env or "local",
    )
    cache_dir = loader["parameters"]["separation"].get("cache_dir")
    stems = loader["catalog"]["stems"]["filepath"]
    return (project / cache_dir if cache_dir else None), project / stems


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
    cache_dir, stems_path = _stems_settings(project, args.env)
    separator = args.separator or current_separator(stems_path)
    deletions = old_versions(project / "data", args.keep)
    if cache_dir is not None:
        deletions += stale_cache_entries(
            cache_dir, separator, _other_separators(project, stems_path)
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
