"""The shared plumbing of the single-file versioned datasets: fsspec, paths, versions."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath
from typing import Any, BinaryIO, Generic, TypeVar

import fsspec
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

log = logging.getLogger(__name__)

_CHUNK = 1 << 24

_In = TypeVar("_In")
_Out = TypeVar("_Out")


class VersionedFileDataset(AbstractVersionedDataset[_In, _Out], Generic[_In, _Out]):
    """A versioned dataset stored as one file; subclasses turn data into bytes and back.

    Local folders are created on save (``auto_mkdir``).
    """

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        fs_args = dict(fs_args or {})
        if protocol == "file":
            fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **fs_args)
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    @contextmanager
    def _open_for_load(self) -> Iterator[BinaryIO]:
        """The version to load, as a binary stream (read lazily, not into memory)."""
        path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(path, mode="rb") as stream:
            yield stream

    def _write_bytes(self, payload: bytes) -> None:
        self._write_stream(lambda stream: stream.write(payload))

    def _write_stream(self, write: Callable[[BinaryIO], object]) -> None:
        """Save a new version by calling ``write`` on a binary stream.

        Local files are written to a temporary name beside the target (so no copy of
        the payload need sit in memory), then either hard-linked to the newest earlier
        version when the bytes are the same or renamed into place.
        """
        path = get_filepath_str(self._get_save_path(), self._protocol)
        if self._protocol != "file":
            with self._fs.open(path, mode="wb") as stream:
                write(stream)
            self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
            return
        folder = os.path.dirname(path) or "."
        os.makedirs(folder, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
        )
        try:
            with os.fdopen(descriptor, "wb") as stream:
                write(stream)
            same = self._identical_newest_version(temporary, path)
            if same is not None and self._link(same, path):
                log.info(
                    "%s: identical to %s, hard-linked instead of written again",
                    path,
                    same,
                )
            else:
                os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))

    def _identical_newest_version(self, written: str, save_path: str) -> str | None:
        """The newest earlier version of this file when its bytes equal ``written``'s.

        Every experiment run saves the clips, the mix and the stems again; on real
        PMEmo each is gigabytes, and a rerun usually produces the same bytes.
        Versions are never written in place, so they can share one file.
        """
        if not self._version:
            return None
        pattern = f"{self._filepath}/*/{self._filepath.name}"
        earlier = sorted(p for p in self._fs.glob(pattern) if p != save_path)
        if not earlier:
            return None
        newest = earlier[-1]
        try:
            if os.path.getsize(newest) != os.path.getsize(written):
                return None
            with open(newest, "rb") as old, open(written, "rb") as new:
                while block := old.read(_CHUNK):
                    if block != new.read(len(block)):
                        return None
        except OSError as error:
            # An unreadable earlier version must not stop this one being saved.
            log.warning("%s: cannot compare with %s (%s)", save_path, newest, error)
            return None
        return newest

    def _link(self, existing: str, path: str) -> bool:
        """Hard-link ``path`` to ``existing``; False where the file system cannot."""
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.link(existing, path)
        except OSError as error:
            log.debug(
                "cannot hard-link %s to %s (%s): writing a copy", path, existing, error
            )
            return False
        return True

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "version": self._version}

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(path)
