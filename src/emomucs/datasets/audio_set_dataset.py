"""A versioned Kedro dataset holding an :class:`~emomucs.audio.AudioSet` as one npz."""

from __future__ import annotations

import json
import zipfile
from functools import partial
from typing import Any, BinaryIO

import numpy as np
from kedro.io.core import DatasetError, Version, get_filepath_str

from emomucs import audio_codec
from emomucs.audio import AudioSet, LazyAudio

from .versioned_file import VersionedFileDataset

_META_KEY = "__meta__"
_TRACK_PREFIX = "track_"  # float32 array (FLAC cannot hold it, or written before FLAC)
_FLAC_PREFIX = "flac_"  # FLAC bytes as uint8, scales and shape in the meta
_FORMAT = 2
# A fixed member date keeps the bytes of a rerun identical, so versions can share a file.
_DATE = (1980, 1, 1, 0, 0, 0)


def _write_member(archive: zipfile.ZipFile, key: str, array: np.ndarray) -> None:
    info = zipfile.ZipInfo(f"{key}.npy", date_time=_DATE)
    with archive.open(info, "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


class AudioSetDataset(VersionedFileDataset[AudioSet, AudioSet]):
    """Audio of many tracks (clips, mix or stems) in one npz file, one track at a time.

    Each track is a member of the npz: 16-bit FLAC scaled to each row's peak
    (:mod:`emomucs.audio_codec`, a third to a quarter of float32) or, with
    ``codec: float32`` or where FLAC cannot hold it, the float32 array. Saving writes
    the tracks one by one, so an AudioSet whose audio is a
    :class:`~emomucs.audio.LazyAudio` is never in memory whole; loading returns a
    LazyAudio that decodes a track when it is looked up. Files written before FLAC
    (float32 members only) still load.

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
        codec: str = "flac",
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if codec not in {"flac", "float32"}:
            raise DatasetError(f"AudioSetDataset codec {codec!r}: use flac or float32")
        super().__init__(filepath, version, fs_args, metadata)
        self._codec = codec

    def load(self) -> AudioSet:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(path, mode="rb") as stream:
            with np.load(stream, allow_pickle=False) as archive:
                meta = json.loads(str(archive[_META_KEY]))
                members = list(archive.files)
                legacy = {
                    int(key.removeprefix(_TRACK_PREFIX)): key
                    for key in members
                    if key.startswith(_TRACK_PREFIX)
                }
                shapes = {
                    int(key): tuple(track["shape"])
                    for key, track in meta.get("tracks", {}).items()
                }
                if legacy and not meta.get("tracks"):
                    # written before FLAC: shapes are only in the members themselves
                    shapes = {
                        music_id: archive[key].shape for music_id, key in legacy.items()
                    }
        tracks = meta.get("tracks", {})
        loaders = {
            music_id: partial(
                self._load_track, path, music_id, tracks.get(str(music_id))
            )
            for music_id in shapes
        }
        return AudioSet(
            sample_rate=int(meta["sample_rate"]),
            audio=LazyAudio(loaders, shapes),
            sources=tuple(meta["sources"]),
            attrs=dict(meta.get("attrs", {})),
        )

    def _load_track(
        self, path: str, music_id: int, track: dict[str, Any] | None
    ) -> np.ndarray:
        with self._fs.open(path, mode="rb") as stream:
            with np.load(stream, allow_pickle=False) as archive:
                if track is not None and "scales" in track:
                    return audio_codec.decode(
                        archive[f"{_FLAC_PREFIX}{music_id}"].tobytes(),
                        track["scales"],
                        tuple(track["shape"]),
                    )
                return np.asarray(archive[f"{_TRACK_PREFIX}{music_id}"])

    def save(self, data: AudioSet) -> None:
        if not isinstance(data, AudioSet):
            raise DatasetError(f"AudioSetDataset saves an AudioSet, got {type(data)}")
        self._write_stream(partial(self._write_archive, data))

    def _write_archive(self, data: AudioSet, stream: BinaryIO) -> None:
        tracks: dict[str, dict[str, Any]] = {}
        with zipfile.ZipFile(
            stream, mode="w", compression=zipfile.ZIP_STORED
        ) as archive:
            for music_id in data.music_ids:
                audio = np.asarray(data.audio[music_id], dtype=np.float32)
                track: dict[str, Any] = {"shape": list(audio.shape)}
                encoded = (
                    audio_codec.encode(audio, data.sample_rate)
                    if self._codec == "flac"
                    else None
                )
                if encoded is None:
                    _write_member(archive, f"{_TRACK_PREFIX}{music_id}", audio)
                else:
                    flac, track["scales"] = encoded
                    _write_member(
                        archive,
                        f"{_FLAC_PREFIX}{music_id}",
                        np.frombuffer(flac, dtype=np.uint8),
                    )
                tracks[str(music_id)] = track
            meta = {
                "format": _FORMAT,
                "sample_rate": int(data.sample_rate),
                "sources": list(data.sources),
                "attrs": dict(data.attrs),
                "tracks": tracks,
            }
            _write_member(archive, _META_KEY, np.array(json.dumps(meta)))
