"""A versioned Kedro dataset for tensors and checkpoints, saved with ``torch.save``."""

from __future__ import annotations

import io
from typing import Any

import torch
from kedro.io.core import DatasetError

from .versioned_file import VersionedFileDataset

_SCALARS = (bool, int, float, str, bytes, type(None), torch.dtype)


def _check_plain(value: Any, where: str) -> None:
    """Fail on anything ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(value, (torch.Tensor, *_SCALARS)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, f"{where} key")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise DatasetError(
        f"TorchDataset saves tensors and plain containers only (so loading runs no "
        f"code); {where} is a {type(value).__name__}"
    )


class TorchDataset(VersionedFileDataset[Any, Any]):
    """Plain data with tensors (dicts, lists, numbers, strings, tensors) in one file.

    Loading uses ``torch.load(weights_only=True)``, which rebuilds tensors and plain
    containers only and runs no pickled code, so a file from elsewhere cannot
    execute anything. Saving anything else (a numpy array, a custom object) fails
    at save time, not at the next load.

    Example catalog entry::

        stems_log_mel:
          type: emomucs.datasets.TorchDataset
          filepath: data/04_feature/stems_log_mel.pt
          versioned: true
    """

    def load(self) -> Any:
        with self._open_for_load() as stream:
            return torch.load(io.BytesIO(stream.read()), weights_only=True)

    def save(self, data: Any) -> None:
        _check_plain(data, "data")
        # straight to the file: no in-memory copy of a feature set of the whole corpus
        self._write_stream(lambda stream: torch.save(data, stream))
