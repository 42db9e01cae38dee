"""A folder of audio files as one Kedro dataset, loaded lazily and confined to its root."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from kedro.io import AbstractDataset, DatasetError

from emomucs.audio import AUDIO_EXTENSIONS, AudioError, load_audio

AudioLoader = Callable[[], tuple[np.ndarray, int]]

_SUFFIXES = {"WAV": ".wav", "FLAC": ".flac"}


class AudioFolderDataset(AbstractDataset[dict[str, tuple[np.ndarray, int]], dict]):
    """Every audio file below a folder, keyed by its relative path without extension.

    Loading returns ``key -> loader`` where calling the loader decodes that file, so a
    pipeline reads only the tracks it needs. Only entries under ``path`` are listed,
    which keeps a dataset's ``fileName`` column from reaching outside its root, and a
    symbolic link is followed only when its target lies inside the (resolved) root: the
    loader of a link leading out of it, of a directory or of anything else that is not
    a regular file raises :class:`~emomucs.audio.AudioError` saying so, without opening
    it. A missing folder loads as an empty dict: the consumer decides whether that is
    an error.

    Saving takes ``key -> (array (channels, samples), sample_rate)`` and writes
    ``<path>/<key>.wav`` (16-bit PCM) through a temporary file and a rename;
    ``format: FLAC`` writes ``<key>.flac`` instead: the same 16-bit samples, lossless,
    in about half the bytes. ``subtypes`` gives the files under some top-level folders
    of the keys another subtype than ``subtype`` (``{stems: PCM_24}``), so one dataset
    can write a whole corpus one track at a time.
    """

    def __init__(
        self,
        path: str,
        extensions: list[str] | None = None,
        subtype: str = "PCM_16",
        format: str = "WAV",  # soundfile's name for it
        subtypes: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if format.upper() not in _SUFFIXES:
            raise DatasetError(
                f"AudioFolderDataset format {format!r}: use one of {sorted(_SUFFIXES)}"
            )
        self._path = Path(path)
        self._format = format.upper()
        self._extensions = tuple(e.lower() for e in (extensions or AUDIO_EXTENSIONS))
        self._subtype = subtype
        self._subtypes = dict(subtypes or {})
        self.metadata = metadata

    def load(self) -> dict[str, AudioLoader]:
        if not self._path.is_dir():
            return {}
        loaders: dict[str, AudioLoader] = {}
        root = self._path.resolve()
        for file in sorted(self._path.rglob("*")):
            if file.suffix.lower() not in self._extensions:
                continue
            key = file.relative_to(self._path).with_suffix("").as_posix()
            if key in loaders:
                raise DatasetError(
                    f"{self._path}: two audio files share the key {key!r} "
                    "(same name, different extensions)"
                )
            problem = self._refusal(file, root)
            loaders[key] = (
                partial(load_audio, file)
                if problem is None
                else partial(_refuse, problem)
            )
        return loaders

    def _refusal(self, file: Path, root: Path) -> str | None:
        """Why ``file`` must not be opened, or None for a regular file in the root."""
        name = f"{self._path.name}/{file.relative_to(self._path).as_posix()}"
        target = file.resolve()
        if root != target and root not in target.parents:
            return (
                f"{name} is a symbolic link to {target}, outside {self._path.name}/: "
                "refused (copy the file into the dataset instead)"
            )
        if target.is_dir():
            return f"{name} is a directory, not an audio file"
        if not target.is_file():
            if file.is_symlink():
                return f"{name} is a broken symbolic link (to {target})"
            return f"{name} is not a regular file"
        return None

    def file_for(self, key: str) -> Path | None:
        """The file behind ``key``, or None; for messages and provenance."""
        for extension in self._extensions:
            candidate = self._path / f"{key}{extension}"
            if candidate.is_file():
                return candidate
        return None

    def save(self, data: dict[str, tuple[np.ndarray, int]]) -> None:
        root = self._path.resolve()
        for key, (audio, sample_rate) in data.items():
            suffix = _SUFFIXES[self._format]
            target = (root / f"{key}{suffix}").resolve()
            if root not in target.parents:
                raise DatasetError(f"refusing to write {key!r} outside {root}")
            target.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(
                dir=target.parent, prefix=f".{target.stem}.", suffix=suffix
            )
            os.close(descriptor)
            try:
                sf.write(
                    temporary,
                    np.asarray(audio, dtype=np.float32).T,
                    int(sample_rate),
                    subtype=self._subtypes.get(key.split("/")[0], self._subtype),
                    format=self._format,
                )
                os.replace(temporary, target)
            finally:
                if os.path.exists(temporary):
                    os.unlink(temporary)

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "extensions": self._extensions}


def _refuse(problem: str) -> tuple[np.ndarray, int]:
    """The loader of an entry that must not be read: fails with why."""
    raise AudioError(problem)
