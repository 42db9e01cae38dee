"""Signal-to-distortion ratio, as Demucs reports it (the MDX 2021 definition)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from emomucs.audio import AudioSet, is_lazy
from emomucs.device import one_blas_thread
from emomucs.fanout import in_chunks, map_in_order

EPSILON = 1e-7
"""Added to both energies, as Demucs does, so silence scores 0 dB instead of NaN."""


def sdr(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """``10 log10(||s||² / ||s - ŝ||²)`` in dB over the last two axes (channels, samples).

    Args:
        reference: True signal(s), ``(..., channels, samples)``.
        estimate: Estimate of the same shape.

    Returns:
        One value per leading index, e.g. per source for ``(sources, channels, samples)``.
    """
    reference = np.asarray(reference, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    if reference.shape != estimate.shape:
        raise ValueError(
            f"reference {reference.shape} and estimate {estimate.shape} differ in shape"
        )
    signal = np.sum(reference**2, axis=(-2, -1)) + EPSILON
    distortion = np.sum((reference - estimate) ** 2, axis=(-2, -1)) + EPSILON
    return 10 * np.log10(signal / distortion)


def summarize_sdr(
    model: Mapping[str, np.ndarray],
    floor: Mapping[str, np.ndarray],
    sources: Sequence[str],
) -> dict:
    """Mean SDR per source over tracks for a separator and the mix-as-estimate floor.

    Args:
        model: ``track -> SDR per source`` of the separator's stems.
        floor: ``track -> SDR per source`` when the mix is the estimate of every source.
        sources: Source names, in the order of the per-track arrays.

    Returns:
        A JSON-ready dict: per source and overall mean (over sources) of model, floor and
        gain in dB, the number of tracks, and the per-track values.
    """
    if set(model) != set(floor):
        raise ValueError("model and floor SDR must cover the same tracks")
    if not model:
        raise ValueError("no tracks to summarise")
    tracks = sorted(model)
    model_table = np.stack([model[track] for track in tracks])
    floor_table = np.stack([floor[track] for track in tracks])
    per_source = {
        source: {
            "model_db": float(model_table[:, index].mean()),
            "floor_db": float(floor_table[:, index].mean()),
            "gain_db": float((model_table[:, index] - floor_table[:, index]).mean()),
        }
        for index, source in enumerate(sources)
    }
    return {
        "tracks": len(tracks),
        "sources": per_source,
        "mean": {
            key: float(np.mean([values[key] for values in per_source.values()]))
            for key in ("model_db", "floor_db", "gain_db")
        },
        "per_track": {
            str(track): {
                source: {
                    "model_db": float(model_table[row, index]),
                    "floor_db": float(floor_table[row, index]),
                }
                for index, source in enumerate(sources)
            }
            for row, track in enumerate(tracks)
        },
    }


def score_chunk(
    tracks: tuple[int, ...], stems: AudioSet, mix: AudioSet, reference: AudioSet
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One fan-out task of :func:`score_stems`: each track's (model, floor) SDR."""
    with one_blas_thread():
        return [_score_track(track, stems, mix, reference) for track in tracks]


def _score_track(
    track: int, stems: AudioSet, mix: AudioSet, reference: AudioSet
) -> tuple[np.ndarray, np.ndarray]:
    """A track's SDR of the stems and of the mix as every source."""
    truth = reference.audio[track]
    estimate = stems.audio[track]
    if estimate.shape != truth.shape:
        raise ValueError(
            f"track {track}: stems {estimate.shape} and true stems {truth.shape} differ"
        )
    floor = sdr(truth, np.broadcast_to(mix.audio[track], truth.shape))
    return sdr(truth, estimate), floor


def score_stems(
    stems: AudioSet, mix: AudioSet, reference: AudioSet, workers: int | str | None = 1
) -> dict:
    """SDR of separated stems and of the mix as every source, against true stems.

    Args:
        stems: Estimated ``(sources, channels, samples)`` per track.
        mix: The mix of each track, ``(channels, samples)`` at the stems' rate.
        reference: True stems, same layout as ``stems``; may be empty.
        workers: Tracks scored side by side in local worker processes: ``auto``
            (one per usable core) or a count; 1 (or audio held in memory rather
            than loaded per track) scores them here.

    Returns:
        :func:`summarize_sdr` over the tracks all three share, plus ``available``;
        ``available: false`` with a reason when there is nothing to compare with.
    """
    tracks = sorted(set(stems.audio) & set(mix.audio) & set(reference.audio))
    if not tracks:
        return {
            "available": False,
            "reason": "no true stems for these clips (<dataset_root>/stems is absent)",
        }
    rates = {stems.sample_rate, mix.sample_rate, reference.sample_rate}
    if len(rates) != 1:
        raise ValueError(
            f"stems, mix and true stems differ in sample rate: {sorted(rates)}"
        )
    jobs = in_chunks(tracks)
    # each task decodes its own tracks' stems, mix and true stems
    chunks = map_in_order(
        score_chunk,
        jobs,
        shared={"stems": stems, "mix": mix, "reference": reference},
        label="score-separation",
        # audio held in memory would be copied whole to every worker
        workers=workers if all(map(is_lazy, (stems, mix, reference))) else 1,
    )
    model, floor = {}, {}
    for job, scores in zip(jobs, chunks, strict=True):
        for track, (of_model, of_floor) in zip(job, scores, strict=True):
            model[track], floor[track] = of_model, of_floor
    return {"available": True, **summarize_sdr(model, floor, stems.sources)}
