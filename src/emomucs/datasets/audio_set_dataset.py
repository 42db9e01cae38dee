"""A versioned Kedro dataset holding an :class:`~emomucs.audio.AudioSet` as one npz."""

from __future__ import annotations

import io
import json
from pathlib import PurePosixPath
from typing import Any

import fsspec
import numpy as np
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from emomucs.audio import AudioSet

_META_KEY = "__meta__"
_TRACK_PREFIX = "track_"


class AudioSetDataset(AbstractVersionedDataset[AudioSet, AudioSet]):
    """Audio of many tracks (clips or stems) in one compressed npz file.

    Example catalog entry::

        clips:
          type: emomucs.datasets.AudioSetDataset
          filepath: data/02_intermediate/clips.npz
          versioned: true
    """

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        compress: bool = False,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        fs_args = dict(fs_args or {})
        if protocol == "file":
            fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **fs_args)
        self._compress = compress
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def load(self) -> AudioSet:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(path, mode="rb") as stream:
            with np.load(stream, allow_pickle=False) as archive:
                meta = json.loads(str(archive[_META_KEY]))
                audio = {
                    int(key.removeprefix(_TRACK_PREFIX)): archive[key]
                    for key in archive.files
                    if key.startswith(_TRACK_PREFIX)
                }
        return AudioSet(
            sample_rate=int(meta["sample_rate"]),
            audio=audio,
            sources=tuple(meta["sources"]),
            attrs=dict(meta.get("attrs", {})),
        )

    def save(self, data: AudioSet) -> None:
        if not isinstance(data, AudioSet):
            raise DatasetError(f"AudioSetDataset saves an AudioSet, got {type(data)}")
        meta = {
            "sample_rate": int(data.sample_rate),
            "sources": list(data.sources),
            "attrs": dict(data.attrs),
        }
        arrays = {f"{_TRACK_PREFIX}{key}": value for key, value in data.audio.items()}
        buffer = io.BytesIO()
        writer = np.savez_compressed if self._compress else np.savez
        writer(buffer, **{_META_KEY: np.array(json.dumps(meta))}, **arrays)
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
