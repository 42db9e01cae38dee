"""C1D: the original code's "DeezerConv1d", a 1-D CNN over time on log-mel frames."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from emomucs.models.base import SourceModel, init_weights


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


def conv1d_body(
    in_channels: int,
    n_frames: int,
    n_filters: Sequence[int],
    kernel_size: int,
    pool_size: int,
    owner: str,
) -> tuple[nn.Sequential, int]:
    """The C1D convolutional part: (conv1d → max-pool → batch-norm) × n, flatten.

    No activation between the blocks, as in the original.

    Returns:
        The module, mapping ``(batch, in_channels, n_frames)`` to
        ``(batch, flattened)``, and the flattened size.

    Raises:
        ValueError: if ``n_frames`` is too short to survive the pooling.
    """
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
    layers.append(nn.Flatten(1))
    return nn.Sequential(*layers), lengths[-1] * n_filters[-1]


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
    """

    name = "C1D"

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
    ) -> None:
        super().__init__()
        self.init_kwargs = {
            "n_mels": int(n_mels),
            "n_frames": int(n_frames),
            "n_filters": [int(n) for n in n_filters],
            "kernel_size": int(kernel_size),
            "pool_size": int(pool_size),
            "hidden_units": int(hidden_units),
            "dropout": float(dropout),
            "n_outputs": int(n_outputs),
        }
        self.n_mels, self.n_frames = int(n_mels), int(n_frames)
        self.feature_net, self.feature_size = conv1d_body(
            self.n_mels, self.n_frames, n_filters, kernel_size, pool_size, self.name
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
