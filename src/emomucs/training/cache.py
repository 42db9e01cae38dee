"""A per-split cache so a killed nested-CV run resumes where it stopped.

Each finished (repeat, outer, inner) training is written to
``<directory>/<variant>/repeat<r>_outer<k>_inner<j>-<key>.pt``, where the key hashes
every input that could change the result (settings, fold membership, data, starting
weights, the repeat). A file is written under a temporary name and renamed, so a run killed
mid-write leaves no half file; a file that fails to load is ignored and retrained.
This is the one place training touches the disk outside the catalog: the cache is
a convenience, and deleting it only costs time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


def hash_values(*values: Any) -> str:
    """sha256 of JSON-able values, tensors and arrays, in order."""
    digest = hashlib.sha256()
    for item in values:
        value = (
            item.detach().cpu().contiguous().numpy()
            if isinstance(item, torch.Tensor)
            else item
        )
        if isinstance(value, np.ndarray):
            digest.update(str((value.dtype, value.shape)).encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        elif (
            isinstance(value, dict)
            and value
            and all(isinstance(v, torch.Tensor) for v in value.values())
        ):
            for key in sorted(value):
                digest.update(key.encode())
                digest.update(hash_values(value[key]).encode())
        else:
            digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def slug(text: str) -> str:
    """A file-name-safe version of a label."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_")


class SplitCache:
    """Finished splits of one variant, on disk; a no-op when ``directory`` is None."""

    def __init__(self, directory: str | Path | None, variant: str) -> None:
        self.directory = Path(directory) / slug(variant) if directory else None

    def _path(self, repeat: int, outer: int, inner: int, key: str) -> Path:
        return (
            self.directory / f"repeat{repeat}_outer{outer}_inner{inner}-{key[:20]}.pt"
        )

    def load(
        self, repeat: int, outer: int, inner: int, key: str
    ) -> dict[str, Any] | None:
        """The cached entry, or None when absent or unreadable."""
        if self.directory is None:
            return None
        path = self._path(repeat, outer, inner, key)
        if not path.is_file():
            return None
        try:
            return torch.load(path, weights_only=True)
        except Exception as error:  # a truncated or foreign file: retrain
            log.warning("ignoring unreadable cache file %s (%s)", path, error)
            return None

    def save(
        self, repeat: int, outer: int, inner: int, key: str, entry: dict[str, Any]
    ) -> None:
        """Write ``entry`` atomically (temporary file, then rename)."""
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(repeat, outer, inner, key)
        handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".part")
        try:
            with os.fdopen(handle, "wb") as stream:
                torch.save(entry, stream)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
