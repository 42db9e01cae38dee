"""Training a compact HTDemucs on multitrack stems, and packaging it as Demucs does.

The model is Demucs' own :class:`demucs.htdemucs.HTDemucs` at a small width and depth,
trained with Demucs' augmentations (random shifts, channel and sign flips, scaling,
remixing sources across songs) and an L1 loss on the waveforms, as ``demucs.solver``
does; the learning rate warms up and then decays on a cosine, which matters most when
the whole budget is a few hundred steps.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from emomucs import SOURCES
from emomucs.device import resolve_device, torch_threads
from emomucs.progress import quiet_progress
from emomucs.separation.sdr import sdr, summarize_sdr
from emomucs.separation.separate import ApplyOptions, demix

logger = logging.getLogger(__name__)


LOSSES = ("l1", "weighted_l1", "sdr")


@dataclass(frozen=True)
class AugmentOptions:
    """Demucs' training augmentations (``demucs.augment``), in its order.

    Attributes:
        shift_s: Each source is shifted by up to this many seconds (independently per
            source, so the model cannot rely on their alignment).
        flip: Random left/right channel swaps and sign flips per source.
        scale: ``[min, max]`` gain drawn per source, or None.
        remix_group: Songs per group whose sources are shuffled into new mixes; 0 turns
            remixing off. Must divide the batch size.
    """

    shift_s: float = 0.5
    flip: bool = True
    scale: tuple[float, float] | None = (0.25, 1.25)
    remix_group: int = 4


@dataclass(frozen=True)
class TrainingOptions:
    """How to build and train the compact separator.

    Attributes:
        sample_rate: Rate the model works at.
        audio_channels: Channels the model works with.
        model: Extra ``HTDemucs`` keyword arguments (``channels``, ``depth``...).
        segment_s: Length of the training excerpts, also the model's inference segment.
        batch_size: Excerpts per step.
        steps: Optimiser steps.
        lr: Peak Adam learning rate.
        warmup_steps: Steps of linear warm-up before the cosine decay.
        final_lr_ratio: Learning rate at the last step, relative to ``lr``.
        grad_clip: Maximum gradient norm, or 0 for none.
        time_limit_s: Stop early after this many seconds (recorded in the history);
            None trains all ``steps``, which is what keeps a run reproducible.
        threads: torch CPU threads while training, or None to leave torch's default.
        device: ``cpu`` (the default: the budget is CPU minutes), ``cuda`` or ``auto``.
            Results are reproducible per device, not across devices.
        seed: Seeds excerpts, augmentations and initialisation.
        loss: ``l1`` (Demucs' loss), ``weighted_l1`` (L1 per source times
            ``source_weights``) or ``sdr`` (minus the SDR of each source over the batch).
        source_weights: Per-source loss weights for ``weighted_l1``: a list in
            ``SOURCES`` order, or ``auto`` for the inverse of each source's mean
            absolute level in the training songs, so quiet sources count as much as
            loud ones (as the mean SDR over sources does).
        augment: Augmentation options.
    """

    sample_rate: int = 22050
    audio_channels: int = 2
    model: dict[str, Any] = field(default_factory=dict)
    segment_s: float = 3.0
    batch_size: int = 8
    steps: int = 300
    lr: float = 3e-3
    warmup_steps: int = 10
    final_lr_ratio: float = 0.02
    grad_clip: float = 5.0
    time_limit_s: float | None = None
    threads: int | None = None
    device: str = "cpu"
    seed: int = 0
    loss: str = "l1"
    source_weights: str | tuple[float, ...] = "auto"
    augment: AugmentOptions = field(default_factory=AugmentOptions)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"separator loss {self.loss!r} is not one of {LOSSES}")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> TrainingOptions:
        options = dict(options)
        augment = dict(options.pop("augment", None) or {})
        if augment.get("scale") is not None:
            augment["scale"] = tuple(augment["scale"])
        if isinstance(options.get("source_weights"), list):
            options["source_weights"] = tuple(options["source_weights"])
        return cls(**options, augment=AugmentOptions(**augment))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_compact_htdemucs(options: TrainingOptions) -> nn.Module:
    """Demucs' HTDemucs at the width and depth the options give."""
    from demucs.htdemucs import HTDemucs

    kwargs = {"channels": 8, "depth": 4, "t_layers": 1, "t_heads": 4}
    kwargs.update(options.model)
    return HTDemucs(
        list(SOURCES),
        audio_channels=options.audio_channels,
        samplerate=options.sample_rate,
        segment=options.segment_s,
        **kwargs,
    )


def build_augment(options: AugmentOptions, sample_rate: int) -> nn.Module:
    """The augmentation chain ``demucs.solver`` builds, from ``demucs.augment``."""
    from demucs import augment

    steps: list[nn.Module] = [augment.Shift(shift=int(options.shift_s * sample_rate))]
    if options.flip:
        steps += [augment.FlipChannels(), augment.FlipSign()]
    if options.scale is not None:
        low, high = options.scale
        steps.append(augment.Scale(proba=1.0, min=low, max=high))
    if options.remix_group:
        steps.append(augment.Remix(proba=1.0, group_size=options.remix_group))
    return nn.Sequential(*steps)


def _learning_rate(step: int, options: TrainingOptions) -> float:
    if step < options.warmup_steps:
        return options.lr * (step + 1) / options.warmup_steps
    span = max(1, options.steps - options.warmup_steps - 1)
    progress = min(1.0, (step - options.warmup_steps) / span)
    floor = options.final_lr_ratio
    return options.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def source_weights(tracks: list[np.ndarray], options: TrainingOptions) -> torch.Tensor:
    """Loss weight per source, normalised to a mean of 1."""
    if options.source_weights == "auto":
        levels = np.mean([np.abs(track).mean(axis=(1, 2)) for track in tracks], axis=0)
        weights = 1.0 / np.maximum(levels, 1e-6)
    else:
        weights = np.asarray(options.source_weights, dtype=np.float64)
        if weights.shape != (len(SOURCES),) or (weights <= 0).any():
            raise ValueError(f"source_weights needs {len(SOURCES)} positive numbers")
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def separation_loss(
    estimate: torch.Tensor, sources: torch.Tensor, loss: str, weights: torch.Tensor
) -> torch.Tensor:
    """The training loss on ``(batch, sources, channels, samples)`` waveforms."""
    if loss == "sdr":
        # energies over the whole batch, so a source silent in one excerpt is harmless
        signal = sources.square().sum(dim=(0, 2, 3))
        error = (sources - estimate).square().sum(dim=(0, 2, 3))
        return -10 * torch.log10((signal + 1e-7) / (error + 1e-7)).mean()
    per_source = (estimate - sources).abs().mean(dim=(0, 2, 3))
    if loss == "weighted_l1":
        return (per_source * weights.to(per_source)).mean()
    return per_source.mean()


def _seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)  # demucs.augment.Remix draws from Python's random
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def train_compact_separator(
    tracks: list[np.ndarray], options: TrainingOptions, progress: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a compact HTDemucs on excerpts of multitrack songs.

    Args:
        tracks: One ``(4, channels, samples)`` array per training song, in ``SOURCES``
            order, at ``options.sample_rate``.
        options: Model and optimisation settings.
        progress: Show a tqdm bar (quiet off a terminal and in CI).

    Returns:
        The trained model in eval mode and a history: loss per step, steps done,
        seconds, and whether the time limit stopped it.
    """
    if options.augment.remix_group and options.batch_size % options.augment.remix_group:
        raise ValueError(
            f"batch size {options.batch_size} is not a multiple of the remix group "
            f"{options.augment.remix_group}"
        )
    excerpt = int(options.segment_s * options.sample_rate)
    crop = excerpt + int(options.augment.shift_s * options.sample_rate)
    short = [index for index, track in enumerate(tracks) if track.shape[-1] < crop]
    if short or not tracks:
        raise ValueError(
            f"training needs songs of at least {crop / options.sample_rate:.2f} s; "
            f"{len(short)} of {len(tracks)} are shorter"
        )
    rng = _seed_everything(options.seed)
    device = resolve_device(options.device)
    model = build_compact_htdemucs(options).to(device)
    augment = build_augment(options.augment, options.sample_rate)
    optimiser = torch.optim.Adam(model.parameters(), lr=options.lr, betas=(0.9, 0.999))
    weights = source_weights(tracks, options)
    losses: list[float] = []
    started = time.perf_counter()
    cpu_started = time.process_time()
    stopped_early = False
    model.train()
    augment.train()
    with torch_threads(options.threads):
        bar = tqdm(
            range(options.steps),
            unit="step",
            desc="training separator",
            disable=not progress or quiet_progress(),
        )
        for step in bar:
            if (
                options.time_limit_s
                and time.perf_counter() - started > options.time_limit_s
            ):
                stopped_early = True
                logger.warning(
                    "separator training stopped by its time limit after %d of %d steps",
                    step,
                    options.steps,
                )
                break
            songs = rng.integers(len(tracks), size=options.batch_size)
            batch = np.stack(
                [
                    tracks[song][..., start : start + crop]
                    for song in songs
                    for start in [rng.integers(tracks[song].shape[-1] - crop + 1)]
                ]
            )
            with torch.no_grad():
                sources = augment(torch.from_numpy(batch).to(device))
            estimate = model(sources.sum(dim=1))
            loss = separation_loss(estimate, sources, options.loss, weights)
            for group in optimiser.param_groups:
                group["lr"] = _learning_rate(step, options)
            optimiser.zero_grad()
            loss.backward()
            if options.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
            optimiser.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
    model.cpu().eval()
    history = {
        "loss": losses,
        "steps": len(losses),
        "seconds": time.perf_counter() - started,
        # CPU seconds of all threads: on a shared machine, seconds / cpu_seconds shows
        # how much of the wall time was waiting for other jobs
        "cpu_seconds": time.process_time() - cpu_started,
        "stopped_early": stopped_early,
        "threads": options.threads or torch.get_num_threads(),
        "device": str(device),
        "source_weights": dict(zip(SOURCES, weights.tolist(), strict=True)),
    }
    return model, history


def package_model(model: nn.Module, training_args: dict[str, Any]) -> dict[str, Any]:
    """The package ``demucs.states.load_model`` rebuilds a model from.

    ``demucs.states.serialize_model`` needs omegaconf, which Demucs does not depend on;
    this is the same dict built by hand, in full precision.
    """
    from demucs.states import get_state

    args, kwargs = model._init_args_kwargs
    return {
        "klass": model.__class__,
        "args": args,
        "kwargs": kwargs,
        "state": get_state(model, None, half=False),
        "training_args": training_args,
    }


def evaluate_separator_sdr(
    model: nn.Module,
    tracks: dict[str, np.ndarray],
    apply: ApplyOptions,
    seed: int = 0,
) -> dict[str, Any]:
    """SDR per source of the model and of the mix as every source's estimate.

    Args:
        model: A Demucs model whose rate and channels the tracks already have.
        tracks: ``song -> (4, channels, samples)`` held-out sources.
        apply: How to apply the model.
        seed: Seeds random shifts, if any.

    Returns:
        :func:`~emomucs.separation.sdr.summarize_sdr` of the songs.
    """
    model_scores, floor_scores = {}, {}
    for index, (song, sources) in enumerate(sorted(tracks.items())):
        mix = sources.sum(axis=0)
        estimate = demix(model, torch.from_numpy(mix[None]), apply, seed + index)[0]
        model_scores[song] = sdr(sources, estimate.numpy())
        floor_scores[song] = sdr(sources, np.broadcast_to(mix, sources.shape))
    return summarize_sdr(model_scores, floor_scores, SOURCES)
