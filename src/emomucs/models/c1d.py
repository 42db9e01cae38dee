"""C1D: the original code's "DeezerConv1d", a 1-D CNN over time on log-mel frames."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from emomucs.models.base import SourceModel, capture_init, init_weights


def conv_pool_length(
    length: int, kernel_sizes: Sequence[int], pool_sizes: Sequence[int]
) -> list[int]:
    """Lengths after each valid convolution + max-pool pair, starting from ``length``.

    Max-pooling floors, as ``nn.MaxPool1d`` with stride equal to its size does.
    """
    lengths = [length]
    for kernel, pool in zip(kernel_sizes, pool_sizes, strict=True):
        lengths.append((lengths[-1] - kernel + 1) // pool)
    return lengths


POOLINGS = ("flatten", "mean", "max", "stats")
"""How C1D turns its last feature map into a vector: ``flatten`` (the paper: every
time position its own weights) or a summary over time (``mean``, ``max``, or
``stats``: mean and standard deviation per filter)."""


class TimePool(nn.Module):
    """Summarise ``(batch, channels, time)`` over time: mean, max or mean+sd.

    ``stats`` concatenates the per-channel mean and (biased) standard deviation,
    ``(batch, 2 × channels)``: the statistics a ridge on per-band means and sds
    sees, computed on learnt channels instead of mel bands.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        if kind not in ("mean", "max", "stats"):
            raise ValueError(f"TimePool: unknown kind {kind!r}")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "mean":
            return x.mean(dim=-1)
        if self.kind == "max":
            return x.amax(dim=-1)
        # The sd of a single frame is 0, not NaN (unbiased would divide by 0).
        return torch.cat([x.mean(dim=-1), x.std(dim=-1, correction=0)], dim=1)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


def pooled_size(channels: int, pooling: str) -> int:
    """Features per example after :class:`TimePool` over ``channels``."""
    return 2 * channels if pooling == "stats" else channels


def conv1d_body(
    in_channels: int,
    n_frames: int,
    n_filters: Sequence[int],
    kernel_size: int,
    pool_size: int,
    owner: str,
    pooling: str = "flatten",
) -> tuple[nn.Sequential, int]:
    """The C1D convolutional part: (conv1d → max-pool → batch-norm) × n, then
    flatten (the original) or a pooling over time (:data:`POOLINGS`).

    No activation between the blocks, as in the original.

    Returns:
        The module, mapping ``(batch, in_channels, n_frames)`` to
        ``(batch, feature_size)``, and that size.

    Raises:
        ValueError: if ``n_frames`` is too short to survive the pooling, or the
            pooling is unknown.
    """
    if pooling not in POOLINGS:
        raise ValueError(
            f"{owner}: unknown pooling {pooling!r}; expected one of {list(POOLINGS)}"
        )
    n_filters = list(n_filters)
    if not n_filters:
        raise ValueError(f"{owner}: n_filters must name at least one conv layer")
    lengths = conv_pool_length(
        n_frames, [kernel_size] * len(n_filters), [pool_size] * len(n_filters)
    )
    if min(lengths) < 1:
        raise ValueError(
            f"{owner}: {n_frames} frames are too few for {len(n_filters)} conv layers "
            f"(kernel {kernel_size}, pool {pool_size}): lengths {lengths}"
        )
    layers: list[nn.Module] = []
    channels = [in_channels, *n_filters]
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers += [
            nn.Conv1d(c_in, c_out, kernel_size=kernel_size),
            nn.MaxPool1d(pool_size),
            nn.BatchNorm1d(c_out),
        ]
    if pooling == "flatten":
        layers.append(nn.Flatten(1))
        return nn.Sequential(*layers), lengths[-1] * n_filters[-1]
    layers.append(TimePool(pooling))
    return nn.Sequential(*layers), pooled_size(n_filters[-1], pooling)


def dense_head(
    feature_size: int, hidden_units: int, n_outputs: int, dropout: float
) -> tuple[nn.Sequential, nn.Sequential]:
    """C1D's head, split where mid fusion cuts it.

    Returns:
        ``hidden`` (dropout → FC → ReLU) and ``output`` (dropout → FC, linear).
    """
    hidden = nn.Sequential(
        nn.Dropout(dropout), nn.Linear(feature_size, hidden_units), nn.ReLU()
    )
    output = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_units, n_outputs))
    return hidden, output


class C1D(SourceModel):
    """1-D CNN whose input channels are the mel bands (the original "DeezerConv1d").

    conv1d n_mels→32 (k 8) → max-pool 4 → BN → conv1d 32→16 (k 8) → max-pool 4 →
    BN → flatten (816 at 40 mels × 862 frames) → dropout → FC 64 → ReLU →
    dropout → FC 2. Kaiming-uniform conv, Xavier-uniform FC initialisation.

    ``pooling`` other than ``flatten`` (this project's option) replaces the flatten
    with a summary over time (:class:`TimePool`): 16 features for ``mean``/``max``,
    32 for ``stats``, whatever the clip length. Flattening gives each of the 51 time
    positions its own 64 weights per filter, which ~40 training tracks cannot pin
    down; a summary over time is what a ridge on per-band statistics sees.

    Input ``(batch, n_mels, n_frames)``; output ``(batch, n_outputs)``, linear.

    Args:
        n_mels: mel bands (input channels).
        n_frames: frames per clip; fixes the flattened size.
        n_filters: filters of each conv layer.
        kernel_size: conv kernel length, in frames.
        pool_size: max-pool size and stride.
        hidden_units: units of the hidden FC layer.
        dropout: dropout before each FC layer.
        n_outputs: predicted values (valence, arousal).
        pooling: ``flatten`` (the paper), ``mean``, ``max`` or ``stats`` (mean and
            sd) over time, see :data:`POOLINGS`.
    """

    name = "C1D"

    @capture_init
    def __init__(
        self,
        n_mels: int = 40,
        n_frames: int = 862,
        n_filters: Sequence[int] = (32, 16),
        kernel_size: int = 8,
        pool_size: int = 4,
        hidden_units: int = 64,
        dropout: float = 0.5,
        n_outputs: int = 2,
        pooling: str = "flatten",
    ) -> None:
        super().__init__()
        self.n_mels, self.n_frames = int(n_mels), int(n_frames)
        self.feature_net, self.feature_size = conv1d_body(
            self.n_mels,
            self.n_frames,
            n_filters,
            kernel_size,
            pool_size,
            self.name,
            pooling,
        )
        self.hidden_net, self.output_net = dense_head(
            self.feature_size, hidden_units, n_outputs, dropout
        )
        self.hidden_size = int(hidden_units)
        self.n_outputs = int(n_outputs)
        self.has_hidden_layer = True
        self.apply(init_weights)

    def check_input(self, x: torch.Tensor) -> None:
        expected = (self.n_mels, self.n_frames)
        if x.ndim != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"{self.name}: expected input (batch, {expected[0]} mels, "
                f"{expected[1]} frames), got {tuple(x.shape)}"
            )
