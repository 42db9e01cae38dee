"""Applying a Demucs separator to clips: rates, channels, batching, stems per source."""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from emomucs import SOURCES
from emomucs.audio import LazyAudio, fix_length, resample, set_channels
from emomucs.device import resolve_device
from emomucs.fanout import map_in_order
from emomucs.progress import quiet_progress
from emomucs.separation.cache import StemsCache, audio_digest, environment
from emomucs.separation.separators import CallableSeparator, LoadedSeparator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyOptions:
    """Options of ``demucs.apply.apply_model`` and of batching.

    Attributes:
        shifts: Random time shifts averaged per clip (Demucs' "shift trick"); 0 is
            deterministic and fastest.
        overlap: Overlap of consecutive segments when ``split``.
        split: Cut clips into the model's segment length (required by HTDemucs for
            input longer than its training segment).
        segment: Segment length in seconds overriding the model's, or None.
        batch_size: Clips per forward pass. With ``shifts`` > 0 each clip runs alone,
            seeded by its musicId, so its stems do not depend on its batch-mates.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        normalize: Standardise each clip before the model and undo it after, as
            ``demucs.separate`` does.
    """

    shifts: int = 0
    overlap: float = 0.25
    split: bool = True
    segment: float | None = None
    batch_size: int = 4
    device: str = "auto"
    normalize: bool = True

    @classmethod
    def from_options(cls, options: dict[str, Any] | None) -> ApplyOptions:
        return cls(**(options or {}))

    def cache_config(self) -> dict[str, Any]:
        """The options that change the stems (batching and device do not)."""
        config = asdict(self)
        for key in ("batch_size", "device"):
            config.pop(key)
        return config


def source_matrix(model_sources: tuple[str, ...]) -> np.ndarray:
    """``(len(SOURCES), len(model_sources))`` 0/1 matrix mapping model stems to ours.

    Model sources outside drums, bass, other and vocals (``guitar`` and ``piano`` of
    ``htdemucs_6s``) are summed into ``other``, so the stems still add up to the mix.
    """
    matrix = np.zeros((len(SOURCES), len(model_sources)), dtype=np.float32)
    for column, source in enumerate(model_sources):
        row = SOURCES.index(source) if source in SOURCES else SOURCES.index("other")
        matrix[row, column] = 1.0
    missing = [s for s, row in zip(SOURCES, matrix, strict=True) if not row.any()]
    if missing:
        raise ValueError(f"separator sources {model_sources} lack {missing}")
    return matrix


def demix(
    model: nn.Module, mix: torch.Tensor, options: ApplyOptions, seed: int = 0
) -> torch.Tensor:
    """``apply_model`` on ``(batch, channels, samples)`` at the model's rate and channels.

    Returns:
        ``(batch, model sources, channels, samples)`` on the CPU.
    """
    from demucs.apply import apply_model

    if options.normalize:
        reference = mix.mean(dim=1, keepdim=True)
        offset = reference.mean(dim=-1, keepdim=True)
        scale = reference.std(dim=-1, keepdim=True).clamp_min(1e-8)
        mix = (mix - offset) / scale
    random.seed(seed)
    with torch.inference_mode():
        estimates = apply_model(
            model,
            mix,
            shifts=options.shifts,
            split=options.split,
            overlap=options.overlap,
            segment=options.segment,
            device=resolve_device(options.device),
        ).cpu()
    if options.normalize:
        # each stem gets its share of the offset, so the stems still sum to the mix
        sources = estimates.shape[1]
        estimates = estimates * scale[:, None] + offset[:, None] / sources
    return estimates


def separate_batch(
    model: nn.Module,
    clips: list[np.ndarray],
    sample_rate: int,
    output_rate: int,
    options: ApplyOptions,
    seed: int = 0,
) -> list[np.ndarray]:
    """Separate equally long clips in one ``apply_model`` call.

    Args:
        model: A Demucs model or bag, in eval mode.
        clips: ``(channels, samples)`` arrays at ``sample_rate``, all the same length.
        sample_rate: Rate of the clips.
        output_rate: Rate of the returned stems.
        options: How to apply the model.
        seed: Seeds Demucs' random shifts (Python's ``random``) for this call.

    Returns:
        One ``(4, 1, samples)`` float32 array per clip: mono stems in ``SOURCES`` order,
        at ``output_rate``, as long as the clip at that rate.
    """
    lengths = {clip.shape[-1] for clip in clips}
    if len(lengths) != 1:
        raise ValueError(
            f"clips in one batch must share a length, got {sorted(lengths)}"
        )
    model_rate = int(model.samplerate)
    channels = int(model.audio_channels)
    batch = np.stack(
        [
            resample(set_channels(clip, channels), sample_rate, model_rate)
            for clip in clips
        ]
    )
    estimates = demix(model, torch.from_numpy(batch), options, seed)
    # (batch, model sources, channels, samples) -> ours, mono, then the output rate
    mapping = torch.from_numpy(source_matrix(tuple(model.sources)))
    stems = torch.einsum("ij,bjct->bict", mapping, estimates).mean(dim=2, keepdim=True)
    target = round(lengths.pop() * output_rate / sample_rate)
    return [
        fix_length(resample(stem.numpy(), model_rate, output_rate), target)
        for stem in stems
    ]


def separate_with_callable(
    separator: CallableSeparator,
    clips: list[np.ndarray],
    music_ids: list[int],
    sample_rate: int,
    output_rate: int,
) -> list[np.ndarray]:
    """Separate clips one by one with a plain function (:class:`CallableSeparator`).

    Returns:
        One ``(stems, 1, samples)`` float32 array per clip: mono stems in the
        separator's order, at ``output_rate``, as long as the clip at that rate.
    """
    results = []
    for music_id, clip in zip(music_ids, clips, strict=True):
        stems = separator.separate(clip, sample_rate, f"track {music_id}")
        target = round(clip.shape[-1] * output_rate / sample_rate)
        mono = stems.mean(axis=1, keepdims=True)
        results.append(fix_length(resample(mono, sample_rate, output_rate), target))
    return results


def _batches(pending: list[int], lengths: Mapping[int, int], size: int):
    """Batches of at most ``size`` equally long clips, shortest clips first."""
    batch: list[int] = []
    for music_id in sorted(pending, key=lambda key: (lengths[key], key)):
        if batch and (len(batch) == size or lengths[music_id] != lengths[batch[0]]):
            yield batch
            batch = []
        batch.append(music_id)
    if batch:
        yield batch


def _length(clips: Mapping[int, np.ndarray], music_id: int) -> int:
    if isinstance(clips, LazyAudio):
        return clips.shape(music_id)[-1]
    return clips[music_id].shape[-1]


def _log_stale_entries(
    cache: StemsCache, pending: list[int], parts: dict[int, dict[str, Any]]
) -> None:
    """Say once per reason why tracks with earlier cache entries are separated again."""
    reasons: dict[str, list[int]] = {}
    for music_id in pending:
        reason = cache.explain_miss(music_id, parts[music_id])
        if reason is not None:
            reasons.setdefault(reason, []).append(music_id)
    for reason, tracks in reasons.items():
        logger.info(
            "separation: %d cached tracks (first %s) do not match and are separated "
            "again: %s changed",
            len(tracks),
            tracks[0],
            reason,
        )


@dataclass(frozen=True)
class BatchJob:
    """One batch of equally long clips to separate, with their cache keys.

    Attributes:
        music_ids: The tracks, in batch order.
        seed: Seeds Demucs' random shifts for this batch.
        keys: Each track's cache key (:meth:`StemsCache.digest`).
        parts: Each track's key parts, kept in its entry.
    """

    music_ids: tuple[int, ...]
    seed: int
    keys: list[str]
    parts: list[dict[str, Any]]


def separate_and_cache_batch(
    job: BatchJob,
    clips: Mapping[int, np.ndarray],
    separator: LoadedSeparator | CallableSeparator,
    sample_rate: int,
    output_rate: int,
    options: ApplyOptions,
    cache: StemsCache,
) -> list[np.ndarray] | list[tuple[int, ...]]:
    """Separate one batch and cache each track; one fan-out task of
    :func:`separate_tracks`.

    Returns:
        With the cache on, each track's stems shape (the stems stay in the cache and
        are not sent back); with it off, the stems.
    """
    # looked up here, one batch at a time (a LazyAudio decodes each clip)
    batch = [clips[music_id] for music_id in job.music_ids]
    try:
        if isinstance(separator, CallableSeparator):
            results = separate_with_callable(
                separator, batch, list(job.music_ids), sample_rate, output_rate
            )
        else:
            results = separate_batch(
                separator.model,
                batch,
                sample_rate,
                output_rate,
                options,
                seed=job.seed,
            )
    except Exception as error:
        raise RuntimeError(
            f"tracks {list(job.music_ids)}: separation with {separator.identity} "
            f"failed: {error}"
        ) from error
    if not cache.enabled:
        return results
    for music_id, key, parts, result in zip(
        job.music_ids, job.keys, job.parts, results, strict=True
    ):
        cache.save(music_id, key, result, separator.identity, parts)
    return [result.shape for result in results]


def separate_tracks(
    clips: Mapping[int, np.ndarray],
    sample_rate: int,
    separator: LoadedSeparator | CallableSeparator,
    output_rate: int,
    options: ApplyOptions,
    cache: StemsCache,
    seed: int = 0,
    progress: bool = True,
    workers: int | str | None = 1,
) -> Mapping[int, np.ndarray]:
    """Stems for every clip, reusing cached tracks and caching each finished batch.

    With the cache on, finished stems live only in the cache: the result is a
    :class:`~emomucs.audio.LazyAudio` reading them back one track at a time, so the
    corpus' stems are never in memory together, and resumed and uninterrupted runs
    return the same (stored) stems. It names each track's cache entry
    (:meth:`~emomucs.audio.LazyAudio.file`), so the ``stems`` dataset hard-links the
    entries instead of storing the stems a second time.

    Args:
        clips: ``musicId -> (channels, samples)`` at ``sample_rate`` (a dict or a
            LazyAudio).
        sample_rate: Rate of the clips.
        separator: The loaded model and its identity, or a plain function
            (:class:`CallableSeparator`; ``options`` other than ``batch_size``
            do not apply to it).
        output_rate: Rate of the stems.
        options: How to apply the model.
        cache: Where finished tracks are kept; a disabled cache recomputes all and
            keeps the stems in memory.
        seed: Base seed of the random shifts.
        progress: Show a tqdm bar (tracks/s); it stays quiet off a terminal and in CI.
        workers: Batches separated side by side in local worker processes, each
            with this process' torch threads: ``auto`` (one per usable core) or a
            count; 1 (and any CUDA run: one GPU) separates them here, one by one.
            The stems do not depend on it.

    Returns:
        ``musicId -> (stems, 1, samples)`` float32 stems at ``output_rate``, in
        ``separator.stem_names`` order.
    """
    config = {**options.cache_config(), "output_rate": int(output_rate)}
    if options.shifts:
        config["seed"] = int(seed)  # random shifts make the stems depend on the seed
    device = resolve_device(options.device)
    runtime = environment(str(device))
    parts = {
        music_id: cache.key_parts(
            music_id,
            audio_digest(clips[music_id], sample_rate),
            separator.identity,
            config,
            runtime,
        )
        for music_id in sorted(clips)
    }
    keys = {music_id: cache.digest(parts[music_id]) for music_id in parts}
    lengths = {music_id: _length(clips, music_id) for music_id in keys}
    stems: dict[int, np.ndarray] = {}
    shapes: dict[int, tuple[int, ...]] = {}
    for music_id in sorted(clips):
        cached = cache.shape(music_id, keys[music_id])
        if cached is not None:
            shapes[music_id] = cached
    pending = [music_id for music_id in sorted(clips) if music_id not in shapes]
    _log_stale_entries(cache, pending, parts)
    if shapes:
        logger.info(
            "separation: %d tracks from the cache, %d to do", len(shapes), len(pending)
        )
    # one clip per call with random shifts, so a clip's stems do not depend on its batch
    size = 1 if options.shifts else max(1, options.batch_size)
    jobs = [
        BatchJob(
            tuple(batch),
            seed * 1_000_003 + batch[0],
            [keys[music_id] for music_id in batch],
            [parts[music_id] for music_id in batch],
        )
        for batch in _batches(pending, lengths, size)
    ]
    bar = tqdm(
        total=len(pending),
        unit="track",
        desc="separating",
        disable=not progress or quiet_progress(),
    )
    with bar:
        # one task per batch on a Dask cluster when one is reachable, else this loop
        done = map_in_order(
            separate_and_cache_batch,
            jobs,
            shared={
                "clips": clips,
                "separator": separator,
                "sample_rate": sample_rate,
                "output_rate": output_rate,
                "options": options,
                "cache": cache,
            },
            label="separate",
            on_done=lambda job, _: bar.update(len(job.music_ids)),
            workers=1 if device.type == "cuda" else workers,
        )
    for job, results in zip(jobs, done, strict=True):
        for music_id, result in zip(job.music_ids, results, strict=True):
            if cache.enabled:
                shapes[music_id] = result
            else:
                shapes[music_id] = result.shape
                stems[music_id] = result
    if not cache.enabled:
        return stems
    return LazyAudio(
        {
            music_id: partial(cache.require, music_id, keys[music_id])
            for music_id in keys
        },
        shapes,
        files={music_id: cache.path(music_id, keys[music_id]) for music_id in keys},
    )
