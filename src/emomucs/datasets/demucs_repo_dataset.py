"""A Demucs model package kept as a local Demucs repo (``NAME-<sha256[:8]>.th``)."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

_NAME = re.compile(r"^[A-Za-z0-9_.]+$")
_PACKAGE_KEYS = {"klass", "args", "kwargs", "state"}


class DemucsRepoDataset(AbstractDataset[dict, dict]):
    """One model of a local Demucs repo, as ``demucs.pretrained.get_model`` reads it.

    Saving takes the package ``demucs.states.load_model`` rebuilds a model from
    (``klass``, ``args``, ``kwargs``, ``state``, ``training_args``) and writes it with
    ``demucs.states.save_with_checksum`` as ``<path>/<name>-<sha256[:8]>.th``, through a
    temporary folder and a rename, then removes the files of earlier saves under the
    same name (Demucs refuses a repo holding two). ``get_model(name, repo=path)`` then
    loads it. The checksum in the file name already identifies each version, so the
    folder itself is not versioned.

    Loading returns the package. It is unpickled with ``torch.load(weights_only=False)``
    as Demucs does, so it runs code: load only repos you trust.

    Example catalog entry::

        separator_model:
          type: emomucs.datasets.DemucsRepoDataset
          path: data/06_models/separator
          name: emomucs_compact
    """

    def __init__(self, path: str, name: str, metadata: dict[str, Any] | None = None):
        if not _NAME.match(name):
            # Demucs splits file stems at the last "-" to find the checksum
            raise DatasetError(
                f"Demucs repo model name {name!r}: use letters, digits, _ or ."
            )
        self._path = Path(path)
        self._name = name
        self.metadata = metadata

    def _files(self) -> list[Path]:
        if not self._path.is_dir():
            return []
        return sorted(
            file
            for file in self._path.glob(f"{self._name}*.th")
            if file.stem == self._name or file.stem.rsplit("-", 1)[0] == self._name
        )

    def load(self) -> dict:
        import torch

        files = self._files()
        if len(files) != 1:
            raise DatasetError(
                f"{self._path}: expected one model file for {self._name!r}, found "
                f"{[file.name for file in files] or 'none'}"
            )
        return torch.load(files[0], map_location="cpu", weights_only=False)

    def save(self, data: dict) -> None:
        from demucs.states import save_with_checksum

        missing = _PACKAGE_KEYS - set(data) if isinstance(data, dict) else _PACKAGE_KEYS
        if missing:
            raise DatasetError(
                f"a Demucs model package needs the keys {sorted(missing)}"
            )
        self._path.mkdir(parents=True, exist_ok=True)
        previous = self._files()
        staging = Path(tempfile.mkdtemp(dir=self._path, prefix=f".{self._name}."))
        try:
            save_with_checksum(data, staging / f"{self._name}.th")
            (written,) = staging.iterdir()
            target = self._path / written.name
            written.replace(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for file in previous:
            if file != target:
                file.unlink(missing_ok=True)

    def _exists(self) -> bool:
        return bool(self._files())

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "name": self._name}
