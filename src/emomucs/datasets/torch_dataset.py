"""A versioned Kedro dataset for tensors and checkpoints, saved with ``torch.save``."""

from __future__ import annotations

import io
from pathlib import PurePosixPath
from typing import Any

import fsspec
import torch
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

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


class TorchDataset(AbstractVersionedDataset[Any, Any]):
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

    def load(self) -> Any:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(path, mode="rb") as stream:
            return torch.load(io.BytesIO(stream.read()), weights_only=True)

    def save(self, data: Any) -> None:
        _check_plain(data, "data")
        buffer = io.BytesIO()
        torch.save(data, buffer)
        path = get_filepath_str(self._get_save_path(), self._protocol)
        with self._fs.open(path, mode="wb") as stream:
            stream.write(buffer.getvalue())
        self._invalidate_cache()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "version": self._version}

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(path)

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
