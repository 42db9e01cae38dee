"""A per-split cache so a killed nested-CV run resumes where it stopped.

Each finished (repeat, outer, inner) training is written to
``<directory>/<variant>/repeat<r>_outer<k>_inner<j>-<key>.pt``, where the key hashes
every input that could change the result: settings, fold membership, data, starting
weights, the repeat, and what :func:`environment` describes (the training and model
code, the built model's arguments, torch's version and the device). Beside each entry
a ``.json`` file keeps the key's parts, so when a key changes the log says which part
did (``C1D (vocals): retraining, cached splits do not match: code (1a2b… -> 3c4d…)
changed``). A file is written under a temporary name and renamed, so a run killed
mid-write leaves no half file; a file that fails to load is ignored and retrained.
This is the one place training touches the disk outside the catalog: the cache is
a convenience, and deleting it only costs time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emomucs.atomic import write_atomically, write_text_atomically
from emomucs.fingerprints import changed_parts, source_fingerprint

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


TRAINING_CODE = ("models", "training")
"""emomucs subpackages whose source changes what a split trains to."""


def environment(model: dict[str, Any], device: torch.device | str) -> dict[str, Any]:
    """The key parts a split's settings and data do not hold.

    Args:
        model: The built model's name and arguments (``{"model", "kwargs"}`` of
            :func:`emomucs.models.to_checkpoint`).
        device: Where training runs; only its type (``cpu``, ``cuda``) counts.
    """
    return {
        "code": source_fingerprint(TRAINING_CODE),
        "torch": torch.__version__,
        "device": torch.device(device).type,
        "model": model,
    }


def _plain(parts: dict[str, Any]) -> dict[str, Any]:
    """``parts`` as they read back from JSON (tuples become lists)."""
    return json.loads(json.dumps(parts, sort_keys=True, default=str))


class SplitCache:
    """Finished splits of one variant, on disk; a no-op when ``directory`` is None.

    Args:
        directory: Root of the cache; None turns it off.
        variant: The variant's label (its sub-folder).
        parts: The parts of every key this run builds that do not vary per split
            (kept beside each entry to explain a retraining).
    """

    def __init__(
        self,
        directory: str | Path | None,
        variant: str,
        parts: dict[str, Any] | None = None,
    ) -> None:
        self.directory = Path(directory) / slug(variant) if directory else None
        self.variant = variant
        self.parts = _plain(parts or {})
        self._explained: set[str] = set()

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
            self._explain_miss(repeat, outer, inner, path)
            return None
        try:
            return torch.load(path, weights_only=True)
        except Exception as error:  # a truncated or foreign file: retrain
            log.warning("ignoring unreadable cache file %s (%s)", path, error)
            return None

    def save(
        self, repeat: int, outer: int, inner: int, key: str, entry: dict[str, Any]
    ) -> None:
        """Write ``entry`` atomically (:func:`emomucs.atomic.write_atomically`), so
        several workers may write one folder."""
        if self.directory is None:
            return
        path = self._path(repeat, outer, inner, key)
        write_atomically(path, lambda stream: torch.save(entry, stream))
        # after the entry: a sidecar without its entry would explain nothing
        write_text_atomically(
            path.with_suffix(".json"), json.dumps(self.parts, sort_keys=True)
        )

    def _explain_miss(self, repeat: int, outer: int, inner: int, path: Path) -> None:
        """Log, once per reason, which key part differs from the split's newest
        earlier entry; say nothing when the split was never trained."""
        prefix = f"repeat{repeat}_outer{outer}_inner{inner}-"
        earlier = (
            [
                sidecar
                for sidecar in self.directory.glob(f"{prefix}*.json")
                if sidecar.with_suffix(".pt") != path
            ]
            if self.directory.is_dir()
            else []
        )
        if not earlier:
            return
        newest = max(earlier, key=lambda sidecar: sidecar.stat().st_mtime)
        try:
            old = json.loads(newest.read_text())
        except (OSError, ValueError):
            return
        reason = changed_parts(old, self.parts)
        if old == self.parts:
            reason = "its fold membership, starting weights or repeat"
        if reason not in self._explained:
            self._explained.add(reason)
            log.info(
                "%s: retraining, cached splits do not match: %s changed",
                self.variant,
                reason,
            )
