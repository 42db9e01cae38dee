"""Atomic file writes: a reader (or a second writer) never sees half a file.

The resumable caches (:mod:`emomucs.training.cache`, :mod:`emomucs.separation.cache`)
are written by whichever process finishes a piece of work: one process, or several
Dask workers at once on a shared folder. Each write goes to a temporary file beside
the target, is flushed to disk, then renamed into place; a rename within a folder is
atomic on POSIX file systems (and on NFS), so a kill mid-write leaves at most a
``.<name>.*.tmp`` file that nothing reads, and two workers writing the same entry
leave one whole file (the last rename wins; both wrote the same bytes).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMPORARY_SUFFIX = ".tmp"
"""Suffix of files being written; a killed writer may leave one behind."""


def write_atomically(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Create or replace ``path`` with what ``write`` writes to a binary stream.

    Args:
        path: The file to write; its folder is created when missing.
        write: Called once with an open binary stream (a temporary file beside
            ``path``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=TEMPORARY_SUFFIX
    )
    try:
        with os.fdopen(descriptor, "wb") as stream:
            write(stream)
            stream.flush()
            # on disk before the rename: a crash never leaves a renamed empty file
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


def write_text_atomically(path: str | Path, text: str) -> Path:
    """:func:`write_atomically` for UTF-8 text."""
    return write_atomically(path, lambda stream: stream.write(text.encode()))
