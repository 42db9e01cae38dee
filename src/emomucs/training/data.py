"""Feature sets and the tensors a model trains on.

A feature set is a plain dict (so ``torch.load(weights_only=True)`` reads it back):

- ``representation``: ``"log_mel"``, ``"chroma"``, ``"cqt"`` or ``"waveform"``;
- ``sources``: names of axis 1 (``["mix"]`` for the mix, the stems otherwise);
- ``music_ids``: ``(tracks,)`` int64 tensor;
- ``values``: float32 tensor, ``(tracks, sources, bands, frames)`` for log-mels,
  chroma and constant-Q (bands: mel bands, pitch classes, CQT bins),
  ``(tracks, sources, samples)`` for waveforms;
- ``sample_rate``: of the audio the features come from, Hz;
- ``settings``: the options that made them (plain values).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
import pandas as pd
import torch

from emomucs.training.metrics import DIMENSIONS

REPRESENTATIONS = {"log_mel": 4, "chroma": 4, "cqt": 4, "waveform": 3}
"""Representation name -> ``values.ndim``."""


class FeatureSet(TypedDict):
    """Features of many tracks, one tensor; see the module docstring."""

    representation: str
    sources: list[str]
    music_ids: torch.Tensor
    values: torch.Tensor
    sample_rate: int
    settings: dict[str, Any]


def validate_features(features: FeatureSet, name: str = "features") -> None:
    """Raise ``ValueError`` naming what is wrong with a feature set."""
    missing = set(FeatureSet.__annotations__) - set(features)
    if missing:
        raise ValueError(f"{name}: missing keys {sorted(missing)}")
    representation = features["representation"]
    if representation not in REPRESENTATIONS:
        raise ValueError(
            f"{name}: unknown representation {representation!r}; "
            f"expected one of {sorted(REPRESENTATIONS)}"
        )
    values, ids = features["values"], features["music_ids"]
    if values.ndim != REPRESENTATIONS[representation]:
        raise ValueError(
            f"{name}: {representation} values must have "
            f"{REPRESENTATIONS[representation]} axes, got shape {tuple(values.shape)}"
        )
    if values.shape[0] != len(ids) or values.shape[1] != len(features["sources"]):
        raise ValueError(
            f"{name}: values {tuple(values.shape)} do not match "
            f"{len(ids)} tracks × {len(features['sources'])} sources"
        )


def describe_inputs(features: FeatureSet) -> dict[str, Any]:
    """What a model was trained on, for summaries: the representation, where the
    audio came from (``"mix"``, or the separator identity the stems carry, e.g.
    ``"oracle"`` or ``"local:emomucs_compact:<digest>"``), and the feature settings
    (``features``: sample rate, input shape and the options that made them; the
    same for the mix and stems of one run)."""
    attrs = features["settings"].get("audio_attrs", {})
    if list(features["sources"]) == ["mix"]:
        origin = "mix"
    else:
        origin = attrs.get("separator", "unknown")
    options = {k: v for k, v in features["settings"].items() if k != "audio_attrs"}
    return {
        "representation": features["representation"],
        "audio": origin,
        "features": {
            "sample_rate": int(features["sample_rate"]),
            **input_kwargs(features),
            **options,
        },
    }


def input_kwargs(features: FeatureSet) -> dict[str, int]:
    """The shape arguments a single-source model needs for these features."""
    values = features["values"]
    if features["representation"] != "waveform":
        # C1D and C2D call any spectrogram's bands n_mels
        return {"n_mels": int(values.shape[-2]), "n_frames": int(values.shape[-1])}
    return {
        "sample_rate": int(features["sample_rate"]),
        "n_samples": int(values.shape[-1]),
    }


def select_inputs(
    features: FeatureSet,
    sources: Sequence[str],
    music_ids: Sequence[int] | np.ndarray,
    name: str = "features",
) -> torch.Tensor:
    """Inputs of the given tracks and sources, ``(tracks, len(sources), ...)``.

    Raises:
        ValueError: A source the set does not have, or a track it lacks.
    """
    known = list(features["sources"])
    unknown = [s for s in sources if s not in known]
    if unknown:
        raise ValueError(f"{name}: no source {unknown[0]!r} (it has {known})")
    rows = {int(i): r for r, i in enumerate(features["music_ids"].tolist())}
    index = []
    for music_id in np.asarray(music_ids).tolist():
        if music_id not in rows:
            raise ValueError(f"track {music_id}: in the folds but missing from {name}")
        index.append(rows[music_id])
    columns = [known.index(s) for s in sources]
    values = features["values"]
    # All tracks and sources in their stored order (a late variant over every stem):
    # the set itself, not a copy of it beside the one the caller holds.
    if index != list(range(len(values))):
        values = values[torch.as_tensor(index, dtype=torch.long)]
    if columns != list(range(values.shape[1])):
        values = values[:, columns]
    return values


def select_labels(
    track_table: pd.DataFrame, music_ids: Sequence[int] | np.ndarray
) -> torch.Tensor:
    """``(tracks, 2)`` float32 targets, valence then arousal, in ``music_ids`` order.

    Raises:
        ValueError: A track missing from the table or without a finite label.
    """
    table = track_table.set_index("musicId")[list(DIMENSIONS)]
    ids = np.asarray(music_ids).tolist()
    absent = [i for i in ids if i not in table.index]
    if absent:
        raise ValueError(f"track {absent[0]}: in the folds but not in track_table")
    labels = table.loc[ids].to_numpy(dtype=np.float32)
    bad = ~np.isfinite(labels).all(axis=1)
    if bad.any():
        raise ValueError(f"track {ids[int(np.argmax(bad))]}: valence/arousal missing")
    return torch.from_numpy(np.array(labels))


class Standardiser:
    """Zero mean, unit variance per source and channel, fitted on training data.

    Statistics reduce over tracks and the last (time) axis, so a log-mel gets one
    mean per source and mel band, a waveform one per source. Fit it on the training
    part of a split only; the test fold never influences it.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean, self.std = mean, std

    @classmethod
    def fit(cls, x: torch.Tensor, eps: float = 1e-6) -> Standardiser:
        """Statistics of ``x`` (``(tracks, sources, ..., time)``)."""
        dims = (0, x.ndim - 1)
        mean = x.mean(dim=dims, keepdim=True)
        std = x.std(dim=dims, keepdim=True).clamp_min(eps)
        return cls(mean[0], std[0])

    @classmethod
    def identity(cls, x: torch.Tensor) -> Standardiser:
        """A no-op standardiser shaped for ``x``."""
        shape = (*x.shape[1:-1], 1)
        return cls(torch.zeros(shape), torch.ones(shape))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def state(self) -> dict[str, torch.Tensor]:
        """Plain tensors, for a checkpoint."""
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> Standardiser:
        return cls(state["mean"], state["std"])
