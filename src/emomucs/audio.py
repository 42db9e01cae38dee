"""Audio containers and conversions shared by every stage.

Arrays are float32 shaped ``(channels, samples)``; stems add a leading source axis:
``(sources, channels, samples)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

AUDIO_EXTENSIONS = (".mp3", ".wav", ".flac")


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty or otherwise broken."""


class LazyAudio(Mapping[int, np.ndarray]):
    """``musicId -> array`` that makes each array only when it is looked up.

    Stages go one track at a time, so a corpus of clips or stems never has to sit in
    memory whole: each lookup calls that track's loader (decoding a file, cutting a
    clip, reading a cache entry) and nothing is kept. Shapes are known without
    loading.

    Args:
        loaders: ``musicId -> callable`` returning the track's array.
        shapes: ``musicId -> shape`` of what each loader returns.
        files: ``musicId -> track file`` (:mod:`emomucs.track_file`) holding exactly
            what the loader returns, for the tracks that have one (a stems-cache
            entry, a saved version's track): a dataset can then link the file
            instead of writing the audio again.
    """

    def __init__(
        self,
        loaders: Mapping[int, Callable[[], np.ndarray]],
        shapes: Mapping[int, tuple[int, ...]],
        files: Mapping[int, Path] | None = None,
    ) -> None:
        if set(loaders) != set(shapes):
            raise ValueError("LazyAudio needs a shape for every loader")
        if files is not None and not set(files) <= set(loaders):
            raise ValueError("LazyAudio has files for tracks it has no loader for")
        self._loaders = dict(loaders)
        self._shapes = {
            key: tuple(int(n) for n in shape) for key, shape in shapes.items()
        }
        self._files = {key: Path(path) for key, path in (files or {}).items()}

    def __getitem__(self, music_id: int) -> np.ndarray:
        return self._loaders[music_id]()

    def __iter__(self) -> Iterator[int]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def shape(self, music_id: int) -> tuple[int, ...]:
        """The shape of a track's array, without loading it."""
        return self._shapes[music_id]

    def file(self, music_id: int) -> Path | None:
        """The track file holding this track's array, or None when it has none."""
        return self._files.get(music_id)


def is_lazy(audio: AudioSet) -> bool:
    """True when ``audio`` loads each track on lookup (:class:`LazyAudio`), so it
    travels to another process as its loaders, not as the arrays."""
    return isinstance(audio.audio, LazyAudio)


@dataclass
class AudioSet:
    """Audio of many tracks at one sample rate, keyed by musicId.

    Attributes:
        sample_rate: Sample rate in Hz shared by every track.
        audio: ``musicId -> array``; ``(channels, samples)`` for clips,
            ``(sources, channels, samples)`` for stems. A plain dict, or a
            :class:`LazyAudio` that loads each track on lookup.
        sources: Names of the leading axis for stems, empty for clips.
        attrs: Free-form provenance (e.g. the separator identity), saved with the set.
    """

    sample_rate: int
    audio: Mapping[int, np.ndarray]
    sources: tuple[str, ...] = ()
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def music_ids(self) -> list[int]:
        return sorted(self.audio)

    def shape(self, music_id: int) -> tuple[int, ...]:
        """A track's array shape; :class:`LazyAudio` tells it without loading."""
        if isinstance(self.audio, LazyAudio):
            return self.audio.shape(music_id)
        return tuple(self.audio[music_id].shape)

    def __len__(self) -> int:
        return len(self.audio)


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an mp3, wav or flac file as float32 ``(channels, samples)``.

    Raises:
        AudioError: The file is missing, empty, undecodable or holds no samples.
    """
    path = Path(path)
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise AudioError(f"{path.name}: unsupported audio extension {path.suffix!r}")
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path.name}: empty file (0 bytes)")
    try:
        data, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile raises several types for broken input
        raise AudioError(
            f"{path.name}: cannot decode audio ({_decode_problem(path, error)})"
        ) from error
    if data.shape[0] == 0:
        raise AudioError(f"{path.name}: decoded to 0 samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{path.name}: decoded samples contain NaN or infinity")
    return np.ascontiguousarray(data.T), int(sample_rate)


def _decode_problem(path: Path, error: Exception) -> str:
    """libsndfile's reason, unless it is its misleading "File does not exist".

    libsndfile says a file "does not exist or is not a regular file" when it finds no
    format it can open in a file that does exist (an mp3 holding only an ID3 tag, say).
    """
    message = str(error)
    if "does not exist" not in message:
        return message
    head = path.read_bytes()[:10]
    if head[:3] == b"ID3" and len(head) == 10:
        size = 10 + sum(
            (byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(head[6:])
        )
        if path.stat().st_size <= size + 128:  # room for an ID3v1 tag, not a frame
            return (
                f"the file holds only an ID3 tag ({path.stat().st_size} bytes), "
                "no audio frames"
            )
    return "libsndfile finds no audio stream in it that it can decode"


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling along the last axis; a no-op when the rates match."""
    if source_rate == target_rate:
        return audio.astype(np.float32, copy=False)
    divisor = gcd(int(source_rate), int(target_rate))
    resampled = resample_poly(
        audio, target_rate // divisor, source_rate // divisor, axis=-1
    )
    return resampled.astype(np.float32)


_HALF_POWER = float(np.sqrt(0.5))
BS775_STEREO_FROM_51 = np.array(
    [
        [1.0, 0.0, _HALF_POWER, 0.0, _HALF_POWER, 0.0],
        [0.0, 1.0, _HALF_POWER, 0.0, 0.0, _HALF_POWER],
    ],
    dtype=np.float32,
) / np.float32(1.0 + 2.0 * _HALF_POWER)
"""5.1 (WAV/FLAC order L, R, C, LFE, Ls, Rs) to stereo, ITU-R BS.775: L + 0.707 C +
0.707 Ls, R + 0.707 C + 0.707 Rs, LFE dropped; divided by 1 + 2 × 0.707 so a full-scale
input cannot clip (as ffmpeg normalises its down-mix matrices)."""


def describe_downmix(channels: int) -> str:
    """What :func:`downmix_surround` does with ``channels`` channels, for log lines."""
    if channels == 6:
        return (
            "read as 5.1 (WAV order L R C LFE Ls Rs) and down-mixed to stereo as "
            "ITU-R BS.775 (C, Ls, Rs at -3 dB, LFE dropped)"
        )
    return "no standard layout for this count: averaged into stereo"


def downmix_surround(audio: np.ndarray) -> np.ndarray:
    """More than two channels to stereo.

    Six channels are taken as 5.1 in the WAV/FLAC channel order (soundfile does not
    expose the channel mask) and mixed with :data:`BS775_STEREO_FROM_51`; other counts
    have no standard layout and are averaged into both channels.
    """
    if audio.shape[-2] == 6:
        return np.einsum("oc,...cs->...os", BS775_STEREO_FROM_51, audio).astype(
            np.float32
        )
    return np.repeat(set_channels(audio, 1), 2, axis=-2)


def set_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Down-mix to mono by averaging, or up-mix mono by copying; other changes fail."""
    current = audio.shape[-2]
    if current == channels:
        return audio
    if channels == 1:
        return audio.mean(axis=-2, keepdims=True, dtype=np.float32)
    if current == 1:
        return np.repeat(audio, channels, axis=-2)
    raise AudioError(f"cannot map {current} channels to {channels}")


def fix_length(audio: np.ndarray, samples: int) -> np.ndarray:
    """Cut or zero-pad at the end to exactly ``samples`` along the last axis."""
    current = audio.shape[-1]
    if current >= samples:
        return audio[..., :samples]
    padding = [(0, 0)] * (audio.ndim - 1) + [(0, samples - current)]
    return np.pad(audio, padding)
