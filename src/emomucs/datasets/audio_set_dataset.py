"""A versioned Kedro dataset holding an :class:`~emomucs.audio.AudioSet` as one npz."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from kedro.io.core import DatasetError, Version

from emomucs.audio import AudioSet

from .versioned_file import VersionedFileDataset

_META_KEY = "__meta__"
_TRACK_PREFIX = "track_"


class AudioSetDataset(VersionedFileDataset[AudioSet, AudioSet]):
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
        super().__init__(filepath, version, fs_args, metadata)
        self._compress = compress

    def load(self) -> AudioSet:
        with self._open_for_load() as stream:
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
        self._write_bytes(buffer.getvalue())
