"""One variant's entries in the results store: a file per audio and corpus."""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Any

import fsspec
from kedro.io.core import AbstractDataset, DatasetError, get_protocol_and_path

LATEST = "latest.txt"
"""Names the file saved last (the results store reads ``*.json`` only)."""


def store_name(key: str) -> str:
    """``key`` as a file name stem: characters other than letters, digits, ``.``,
    ``_`` and ``-`` become ``-`` (a separator identity holds ``:``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", key).strip("-") or "unknown"


class SummaryDataset(AbstractDataset[dict, dict]):
    """A variant's ``cv_summary`` in the results store, one JSON file per key.

    ``save`` writes ``<folder>/<summary["key"]>.json``: a summary names its audio
    (mix, oracle or the separator) and corpus in ``key``, so a run on true stems
    does not overwrite the one on separated stems, nor a run on another corpus the
    default corpus' one; a rerun with the same key replaces it. ``load`` returns
    the file saved last (named in ``latest.txt``). ``ResultsStoreDataset`` on the parent folder
    reads every variant's files.

    Args:
        folder: The variant's folder, e.g. ``data/08_reporting/cv_summaries/<variant>``.
        fs_args: Extra arguments of the fsspec filesystem.
        metadata: Free-form metadata (kedro-viz layer, …).
    """

    def __init__(
        self,
        folder: str,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(folder)
        fs_args = dict(fs_args or {})
        if protocol == "file":
            fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **fs_args)
        self._folder = PurePosixPath(path)
        self.metadata = metadata

    def _full(self, path: PurePosixPath | str) -> str:
        path = str(path)
        return path if self._protocol == "file" else f"{self._protocol}://{path}"

    def _files(self) -> list[str]:
        self._fs.invalidate_cache(self._full(self._folder))
        return self._fs.glob(self._full(self._folder / "*.json"))

    def load(self) -> dict:
        files = self._files()
        if not files:
            raise DatasetError(f"no summary stored in {self._folder}")
        newest = max(files, key=lambda f: (self._fs.modified(f), f))
        pointer = self._full(self._folder / LATEST)
        if self._fs.exists(pointer):  # file times can be too coarse to order saves
            with self._fs.open(pointer, "r") as stream:
                named = self._full(self._folder / stream.read().strip())
            newest = named if self._fs.exists(named) else newest
        with self._fs.open(newest, "r") as stream:
            return json.load(stream)

    def save(self, data: dict) -> None:
        path = self.saved_file(data)
        with self._fs.open(path, "w") as stream:
            json.dump(data, stream, indent=2)
        with self._fs.open(self._full(self._folder / LATEST), "w") as stream:
            stream.write(PurePosixPath(path).name)
        self._fs.invalidate_cache(self._full(self._folder))

    def saved_file(self, data: dict) -> str:
        """The file ``save(data)`` writes (the MLflow hook logs it)."""
        if "key" not in data:
            raise DatasetError(
                f"{self._folder}: a summary without 'key' (audio and corpus) "
                "cannot be stored"
            )
        return self._full(self._folder / f"{store_name(str(data['key']))}.json")

    def _exists(self) -> bool:
        return bool(self._files())

    def _describe(self) -> dict[str, Any]:
        # "path", as folder datasets describe theirs (the safe-loading test reads it)
        return {"path": str(self._folder), "protocol": self._protocol}
