"""One track's audio as a small npz file: what the stems cache stores per track and
what a per-track :class:`~emomucs.datasets.AudioSetDataset` version links to.

A track file holds ``flac`` (16-bit FLAC bytes as uint8), ``scales`` (each row's peak)
and ``shape`` (:mod:`emomucs.audio_codec`), or ``audio`` (float32) for arrays FLAC
cannot hold; other members (the stems cache keeps ``separator`` and ``key_parts``) are
ignored when reading. Because the stems cache and the ``stems`` dataset read the same
files the same way, a ``stems`` version can hard-link the cache's entries instead of
holding a second copy of the bytes.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from emomucs import audio_codec

SUFFIX = ".npz"

# A fixed member date keeps the bytes of a rerun identical, so versions can share a file.
_DATE = (1980, 1, 1, 0, 0, 0)
# The rate only labels the FLAC stream; any valid one decodes the same samples.
_LABEL_RATE = 8000


def members(audio: np.ndarray) -> dict[str, np.ndarray]:
    """The npz members holding ``audio`` (FLAC where it can, float32 where not)."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    encoded = audio_codec.encode(audio, _LABEL_RATE)
    if encoded is None:
        return {"audio": audio}
    flac, scales = encoded
    return {
        "flac": np.frombuffer(flac, dtype=np.uint8),
        "scales": np.asarray(scales, dtype=np.float32),
        "shape": np.asarray(audio.shape, dtype=np.int64),
    }


def write_npz(stream: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    """An uncompressed npz of ``arrays`` whose bytes depend on the arrays alone."""
    with zipfile.ZipFile(stream, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            write_member(archive, key, array)


def write_member(archive: zipfile.ZipFile, key: str, array: np.ndarray) -> None:
    """One ``<key>.npy`` member with a fixed date."""
    info = zipfile.ZipInfo(f"{key}.npy", date_time=_DATE)
    with archive.open(info, "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


def _open(source: str | Path | BinaryIO) -> np.lib.npyio.NpzFile:
    loaded = np.load(source, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError("not an npz track file")
    return loaded


def shape(source: str | Path | BinaryIO) -> tuple[int, ...]:
    """The shape of the array a track file holds, read without decoding its audio.

    Raises:
        ValueError, KeyError, OSError, zipfile.BadZipFile: Not a readable track file.
    """
    with _open(source) as archive:
        if "flac" in archive.files:
            for member in ("scales", "flac"):  # a file missing them cannot decode
                if member not in archive.files:
                    raise KeyError(member)
            return tuple(int(n) for n in archive["shape"])
        with archive.zip.open("audio.npy") as member:
            major, _ = np.lib.format.read_magic(member)
            read_header = (
                np.lib.format.read_array_header_1_0
                if major == 1
                else np.lib.format.read_array_header_2_0
            )
            dims, _, _ = read_header(member)
        return tuple(int(n) for n in dims)


def read(source: str | Path | BinaryIO) -> np.ndarray:
    """The float32 array a track file holds.

    Raises:
        ValueError, KeyError, OSError, zipfile.BadZipFile: Not a readable track file.
    """
    with _open(source) as archive:
        if "flac" not in archive.files:
            return np.asarray(archive["audio"])
        return audio_codec.decode(
            archive["flac"].tobytes(),
            archive["scales"].tolist(),
            tuple(int(n) for n in archive["shape"]),
        )
