"""A content-addressed cache of separated stems, so a killed separation run resumes.

Separation is the one expensive step of the project (seconds per clip with a pretrained
Demucs on a CPU), so the separation node keeps each finished track on disk as soon as it
is done. This is a deliberate, documented exception to "nodes touch no files": the
catalog only sees the node's final output, which a killed run never writes, and the
cache is what lets the next run skip the finished tracks. Nothing in it is ever the
source of truth: deleting the folder only costs time.

Each entry is keyed by the track, a hash of the clip's samples and everything that
shapes the stems (separator identity, application options, output rate, and what
:func:`environment` describes: the separation code, torch's and demucs' versions and the
device), so changing any of them never reuses stale stems. Each entry keeps its key's
parts, and a run that cannot reuse a track's earlier entry logs which part changed. Entries are written to a temporary name and
renamed into place, so a partial file is never read back. They hold the stems as 16-bit
FLAC scaled to each stem's peak (:mod:`emomucs.track_file`), a third to a quarter of
float32. The ``stems`` dataset's versions are hard links to these entries (the same
files, read the same way), so the stems take their disk space once, resumed and
uninterrupted runs give the same stems, and deleting the cache never breaks a saved
version. ``python -m emomucs.prune`` deletes entries no current run can use.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from emomucs import track_file
from emomucs.atomic import write_atomically
from emomucs.fingerprints import changed_parts, source_fingerprint

logger = logging.getLogger(__name__)

CACHE_FORMAT = 2
"""Bumped when the meaning of a cached array changes, which invalidates every entry.
2: FLAC entries (``.npz``) instead of float32 ``.npy``."""

ENTRY_SUFFIX = track_file.SUFFIX

SEPARATION_CODE = ("separation", "audio.py", "audio_codec.py", "track_file.py")
"""emomucs modules whose source changes the stems of a clip."""


def environment(device: str) -> dict[str, str]:
    """The key parts the options do not hold: code, library versions, device type.

    Args:
        device: The resolved device the separator runs on (``cpu``, ``cuda:0``).
    """
    import demucs
    import torch

    return {
        "code": source_fingerprint(SEPARATION_CODE),
        "torch": torch.__version__,
        "demucs": getattr(demucs, "__version__", "unknown"),
        "device": torch.device(device).type,
    }


def audio_digest(audio: np.ndarray, sample_rate: int) -> str:
    """sha256 of an array's samples, shape, dtype and sample rate."""
    audio = np.ascontiguousarray(audio)
    digest = hashlib.sha256()
    digest.update(f"{audio.dtype.str}|{audio.shape}|{int(sample_rate)}|".encode())
    digest.update(audio.tobytes())
    return digest.hexdigest()


class StemsCache:
    """Stems of single tracks as ``<directory>/<musicId>-<key>.npz`` files.

    Args:
        directory: Where entries live; created on the first write. ``None`` gives a
            cache that stores nothing, for runs that should leave no trace.
    """

    def __init__(self, directory: str | Path | None) -> None:
        self.directory = Path(directory) if directory is not None else None

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    @staticmethod
    def key_parts(
        music_id: int,
        clip_digest: str,
        separator: str,
        config: dict[str, Any],
        environment: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Every input that determines a track's stems, as JSON-able parts."""
        parts = {
            "format": CACHE_FORMAT,
            "track": int(music_id),
            "clip": clip_digest,
            "separator": separator,
            "config": config,
        }
        return json.loads(json.dumps({**parts, **(environment or {})}, sort_keys=True))

    @staticmethod
    def key(
        music_id: int,
        clip_digest: str,
        separator: str,
        config: dict[str, Any],
        environment: dict[str, str] | None = None,
    ) -> str:
        """The entry key: a hash of :meth:`key_parts`."""
        return StemsCache.digest(
            StemsCache.key_parts(music_id, clip_digest, separator, config, environment)
        )

    @staticmethod
    def digest(parts: dict[str, Any]) -> str:
        """The entry key of :meth:`key_parts`' parts."""
        payload = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]

    def explain_miss(self, music_id: int, parts: dict[str, Any]) -> str | None:
        """Which key parts differ from the track's newest entry written by the same
        separator, or None (no earlier entry, or one without recorded parts)."""
        if self.directory is None or not self.directory.is_dir():
            return None
        earlier = sorted(
            self.directory.glob(f"{int(music_id)}-*{ENTRY_SUFFIX}"),
            key=lambda entry: entry.stat().st_mtime,
            reverse=True,
        )
        for entry in earlier:
            old = self.key_parts_of(entry)
            if old is not None and old.get("separator") == parts.get("separator"):
                return changed_parts(old, parts)
        return None

    @staticmethod
    def separator_of(entry: Path) -> str | None:
        """The separator identity an entry was written by; None when unreadable."""
        try:
            with np.load(entry, allow_pickle=False) as archive:
                return str(archive["separator"])
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
            return None

    @staticmethod
    def key_parts_of(entry: Path) -> dict[str, Any] | None:
        """The key parts an entry was written with; None when unrecorded or unreadable."""
        try:
            with np.load(entry, allow_pickle=False) as archive:
                return json.loads(str(archive["key_parts"]))
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
            return None

    def path(self, music_id: int, key: str) -> Path:
        if self.directory is None:
            raise RuntimeError("this stems cache is disabled")
        return self.directory / f"{int(music_id)}-{key}{ENTRY_SUFFIX}"

    def load(self, music_id: int, key: str) -> np.ndarray | None:
        """The cached stems, or None when absent, disabled or unreadable."""
        return self._read(music_id, key, track_file.read)

    def shape(self, music_id: int, key: str) -> tuple[int, ...] | None:
        """The cached stems' shape, without decoding them (a run that finds every
        track cached reads each entry's audio only where it uses it), or None when
        absent, disabled or unreadable."""
        return self._read(music_id, key, track_file.shape)

    def _read(self, music_id: int, key: str, reader: Callable[[Path], Any]) -> Any:
        if self.directory is None:
            return None
        path = self.path(music_id, key)
        if not path.is_file():
            return None
        try:
            return reader(path)
        except (
            OSError,
            ValueError,
            KeyError,
            RuntimeError,
            zipfile.BadZipFile,
        ) as error:
            # Renames make partial files impossible; a damaged disk is not, so recompute.
            logger.warning(
                "track %s: ignoring unreadable cache entry %s (%s)",
                music_id,
                path,
                error,
            )
            return None

    def require(self, music_id: int, key: str) -> np.ndarray:
        """The cached stems of a track this run has just separated or checked.

        Raises:
            RuntimeError: The entry has gone (deleted or pruned during the run).
        """
        stems = self.load(music_id, key)
        if stems is None:
            raise RuntimeError(
                f"track {music_id}: stems cache entry {self.path(music_id, key)} "
                "vanished during the run; run the separation again"
            )
        return stems

    def save(
        self,
        music_id: int,
        key: str,
        stems: np.ndarray,
        separator: str = "",
        parts: dict[str, Any] | None = None,
    ) -> None:
        """Write atomically (:func:`emomucs.atomic.write_atomically`), so several
        workers may write one folder.

        ``separator`` (its identity) is kept in the entry so that ``python -m
        emomucs.prune`` can tell the entries of other separators; ``parts`` (the
        key's, :meth:`key_parts`) so that a later run can say why it recomputes.
        """
        if self.directory is None:
            return
        members: dict[str, np.ndarray] = {"separator": np.array(str(separator))}
        if parts is not None:
            members["key_parts"] = np.array(json.dumps(parts, sort_keys=True))
        members |= track_file.members(stems)
        write_atomically(
            self.path(music_id, key), lambda stream: np.savez(stream, **members)
        )
