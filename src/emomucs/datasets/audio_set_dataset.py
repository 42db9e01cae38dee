"""A versioned Kedro dataset holding an :class:`~emomucs.audio.AudioSet`: one npz, or a
small npz manifest and a track file per track (hard links where the audio already is)."""

from __future__ import annotations

import io
import json
import logging
import os
import posixpath
import shutil
import zipfile
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from kedro.io.core import DatasetError, Version, get_filepath_str

from emomucs import audio_codec, track_file
from emomucs.audio import AudioSet, LazyAudio

from .versioned_file import VersionedFileDataset

log = logging.getLogger(__name__)

_META_KEY = "__meta__"
_TRACK_PREFIX = "track_"  # float32 array (FLAC cannot hold it, or written before FLAC)
_FLAC_PREFIX = "flac_"  # FLAC bytes as uint8, scales and shape in the meta
_FORMAT = 2
_PER_TRACK_FORMAT = 3
LAYOUTS = ("single", "per_track")


def tracks_folder(manifest: str) -> str:
    """The folder of a per-track version's track files: ``stems.npz`` ->
    ``stems.tracks`` beside it (in the same version folder)."""
    folder, name = posixpath.split(manifest)
    return posixpath.join(folder, f"{posixpath.splitext(name)[0]}.tracks")


class AudioSetDataset(VersionedFileDataset[AudioSet, AudioSet]):
    """Audio of many tracks (clips, mix or stems), stored and read one track at a time.

    Two layouts (``layout``), each track 16-bit FLAC scaled to each row's peak
    (:mod:`emomucs.audio_codec`, a third to a quarter of float32) or, with ``codec:
    float32`` or where FLAC cannot hold it, the float32 array:

    - ``single`` (the default): one npz, a member per track.
    - ``per_track``: the file is a small npz manifest (rate, sources, attrs, each
      track's shape and file) and each track is a track file
      (:mod:`emomucs.track_file`) in ``<name>.tracks/`` beside it, inside the same
      version folder. A track whose audio already lies in a track file (a
      :class:`~emomucs.audio.LazyAudio` naming it, as the separation's stems-cache
      entries are) is a hard link to that file, so the stems are on disk once; where
      a hard link is impossible the file is copied (one warning). A track written
      here is a hard link to the newest earlier version's when the bytes are equal.
      The manifest is written last, so a killed save leaves no version Kedro loads.

    Saving goes one track at a time, so an AudioSet whose audio is a LazyAudio is
    never in memory whole; loading returns a LazyAudio that decodes a track when it is
    looked up (and names its track file, for ``per_track``). Either layout loads
    whatever it reads, so versions written before ``per_track`` (and files written
    before FLAC, float32 members only) still load.

    Example catalog entry::

        stems:
          type: emomucs.datasets.AudioSetDataset
          filepath: data/03_primary/stems.npz
          layout: per_track
          versioned: true
    """

    def __init__(
        self,
        filepath: str,
        version: Version | None = None,
        codec: str = "flac",
        layout: str = "single",
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if codec not in {"flac", "float32"}:
            raise DatasetError(f"AudioSetDataset codec {codec!r}: use flac or float32")
        if layout not in LAYOUTS:
            raise DatasetError(
                f"AudioSetDataset layout {layout!r}: use {' or '.join(LAYOUTS)}"
            )
        super().__init__(filepath, version, fs_args, metadata)
        self._codec = codec
        self._layout = layout

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
        if meta.get("layout") == "per_track":
            audio = self._per_track_audio(path, tracks, shapes)
        else:
            audio = LazyAudio(
                {
                    music_id: partial(
                        self._load_track, path, music_id, tracks.get(str(music_id))
                    )
                    for music_id in shapes
                },
                shapes,
            )
        return AudioSet(
            sample_rate=int(meta["sample_rate"]),
            audio=audio,
            sources=tuple(meta["sources"]),
            attrs=dict(meta.get("attrs", {})),
        )

    def _per_track_audio(
        self,
        manifest: str,
        tracks: dict[str, dict[str, Any]],
        shapes: dict[int, tuple[int, ...]],
    ) -> LazyAudio:
        folder = tracks_folder(manifest)
        files = {
            int(key): posixpath.join(folder, track["file"])
            for key, track in tracks.items()
        }
        missing = sorted(
            music_id for music_id, file in files.items() if not self._fs.exists(file)
        )
        if missing:
            raise DatasetError(
                f"{manifest}: the files of {len(missing)} of {len(files)} tracks are "
                f"missing (tracks {missing[:10]}, e.g. {files[missing[0]]}); they were "
                "deleted by hand (python -m emomucs.prune never deletes a kept "
                "version's files). Delete this version and run the separation again "
                "(kedro run --pipeline=separation): tracks still in the stems cache "
                "are not separated again"
            )
        return LazyAudio(
            {
                music_id: partial(self._read_track_file, file)
                for music_id, file in files.items()
            },
            shapes,
            files=(
                {music_id: Path(file) for music_id, file in files.items()}
                if self._protocol == "file"
                else None
            ),
        )

    def _read_track_file(self, file: str) -> np.ndarray:
        with self._fs.open(file, mode="rb") as stream:
            return track_file.read(stream)

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
        if self._layout == "per_track":
            self._save_per_track(data)
        else:
            self._write_stream(partial(self._write_archive, data))

    def _save_per_track(self, data: AudioSet) -> None:
        manifest = get_filepath_str(self._get_save_path(), self._protocol)
        folder = tracks_folder(manifest)
        if not self._version and self._fs.exists(folder):
            self._fs.rm(folder, recursive=True)  # unversioned: the save replaces it
        self._fs.makedirs(folder, exist_ok=True)
        previous = self._previous_tracks_folder(manifest)
        tracks: dict[str, dict[str, Any]] = {}
        copied: list[int] = []
        for music_id in data.music_ids:
            name = f"{music_id}{track_file.SUFFIX}"
            target = posixpath.join(folder, name)
            source = (
                data.audio.file(music_id) if isinstance(data.audio, LazyAudio) else None
            )
            if source is not None and source.is_file():
                if not self._link_or_copy(source, target):
                    copied.append(music_id)
                shape = data.shape(music_id)
            else:
                audio = np.asarray(data.audio[music_id], dtype=np.float32)
                shape = audio.shape
                self._write_track(
                    audio, target, previous and posixpath.join(previous, name)
                )
            tracks[str(music_id)] = {"shape": [int(n) for n in shape], "file": name}
        if copied:
            log.warning(
                "%s: %d tracks (first %s) could not be hard-linked to the files "
                "already holding them (another file system?): copied, so they take "
                "their disk space twice",
                manifest,
                len(copied),
                copied[0],
            )
        meta = {
            "format": _PER_TRACK_FORMAT,
            "layout": "per_track",
            "sample_rate": int(data.sample_rate),
            "sources": list(data.sources),
            "attrs": dict(data.attrs),
            "tracks": tracks,
        }
        # the manifest last: until it exists, Kedro sees no version here
        self._write_stream(
            lambda stream: track_file.write_npz(
                stream, {_META_KEY: np.array(json.dumps(meta))}
            )
        )

    def _previous_tracks_folder(self, manifest: str) -> str | None:
        """The newest earlier version's track folder (local files), or None."""
        if not self._version or self._protocol != "file":
            return None
        pattern = f"{self._filepath}/*/{self._filepath.name}"
        earlier = sorted(p for p in self._fs.glob(pattern) if p != manifest)
        if not earlier:
            return None
        folder = tracks_folder(earlier[-1])
        return folder if os.path.isdir(folder) else None

    def _link_or_copy(self, source: Path, target: str) -> bool:
        """Hard-link ``target`` to ``source``; copy where impossible (False)."""
        if self._protocol == "file":
            try:
                os.link(source, target)
                return True
            except OSError as error:
                log.debug("cannot hard-link %s to %s (%s)", target, source, error)
                shutil.copyfile(source, target)
                return False
        self._fs.put_file(str(source), target)
        return False

    def _write_track(
        self, audio: np.ndarray, target: str, previous: str | None
    ) -> None:
        """Write one track file, or hard-link the previous version's equal one."""
        arrays = (
            track_file.members(audio) if self._codec == "flac" else {"audio": audio}
        )
        buffer = io.BytesIO()
        track_file.write_npz(buffer, arrays)
        payload = buffer.getvalue()
        if previous is not None and _same_bytes(previous, payload):
            try:
                os.link(previous, target)
                return
            except OSError as error:
                log.debug("cannot hard-link %s to %s (%s)", target, previous, error)
        with self._fs.open(target, mode="wb") as stream:
            stream.write(payload)

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
                    track_file.write_member(
                        archive, f"{_TRACK_PREFIX}{music_id}", audio
                    )
                else:
                    flac, track["scales"] = encoded
                    track_file.write_member(
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
            track_file.write_member(archive, _META_KEY, np.array(json.dumps(meta)))

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "layout": self._layout}


def _same_bytes(path: str, payload: bytes) -> bool:
    try:
        if os.path.getsize(path) != len(payload):
            return False
        with open(path, "rb") as stream:
            return stream.read() == payload
    except OSError:
        return False
