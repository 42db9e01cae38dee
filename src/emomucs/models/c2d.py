"""C2D: the original code's "VGGishEmoNet", a small VGG-like 2-D CNN on log-mels."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from emomucs.models.base import SourceModel, capture_init, init_weights


def plan_pools(
    n_mels: int,
    n_frames: int,
    freq_pools: Sequence[int],
    time_pools: Sequence[int],
    reference_frames: int,
) -> list[tuple[int, int]]:
    """Max-pool sizes per block, ``(freq, time)``.

    Time pools are scaled by ``n_frames / reference_frames`` and rounded, as in the
    original (4, 4, 5, 4, 4 at 1360 frames become 3 each at 862). Unlike the
    original, no pool is below 1 or larger than what is left of its dimension, so
    short inputs still reach the global pooling with at least one cell.
    """
    if len(freq_pools) != len(time_pools):
        raise ValueError(
            f"C2D: {len(freq_pools)} frequency pools but {len(time_pools)} time pools"
        )
    ratio = n_frames / reference_frames
    pools = []
    height, width = n_mels, n_frames
    for f_pool, t_pool in zip(freq_pools, time_pools):
        f = max(1, min(int(f_pool), height))
        t = max(1, min(round(t_pool * ratio), width))
        pools.append((f, t))
        height, width = height // f, width // t
    return pools


class _MaxPoolKeepingIndices(torch.autograd.Function):
    """Max-pooling whose backward pass needs only the argmax indices.

    PyTorch's own max-pool keeps its input for the backward pass as well. In C2D that
    input is the batch-norm's output, which nothing else keeps: the largest feature
    map of the network, held from the forward pass to the backward pass for its
    shape alone. Without it an EmoMucs-C2D late training step at batch 16 peaks
    about 70 MB lower (docs/performance.md), with the same values and gradients.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
        pooled, indices = F.max_pool2d(x, kernel, return_indices=True)
        ctx.save_for_backward(indices)
        ctx.kernel = kernel
        ctx.input_shape = x.shape
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last)
        return pooled

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (indices,) = ctx.saved_tensors
        layout = torch.channels_last if ctx.channels_last else torch.contiguous_format
        if torch.are_deterministic_algorithms_enabled():
            # max_unpool2d refuses deterministic mode; PyTorch's own backward kernel
            # reads only the shape and layout of the input it is given, so an
            # uninitialised tensor of that shape does.
            shape_only = torch.empty(
                ctx.input_shape, dtype=grad.dtype, device=grad.device
            ).contiguous(memory_format=layout)
            kernel = ctx.kernel
            return torch.ops.aten.max_pool2d_with_indices_backward(
                grad, shape_only, kernel, kernel, (0, 0), (1, 1), False, indices
            ), None
        # The pooling windows do not overlap, so scattering each gradient to its
        # argmax is the backward pass exactly (and faster than the kernel above).
        unpooled = F.max_unpool2d(
            grad, indices, ctx.kernel, output_size=ctx.input_shape[-2:]
        )
        return unpooled.contiguous(memory_format=layout), None


class MaxPool2dKeepingIndices(nn.MaxPool2d):
    """``nn.MaxPool2d`` with stride equal to the kernel, no padding, that keeps only
    the argmax indices for the backward pass (:class:`_MaxPoolKeepingIndices`)."""

    def __init__(self, kernel_size: tuple[int, int]) -> None:
        super().__init__(tuple(kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or not x.requires_grad:
            return super().forward(x)
        return _MaxPoolKeepingIndices.apply(x, self.kernel_size)


def original_layout(model: C2D) -> C2D:
    """A copy of ``model`` computed as the original code did: conv → BN → ELU → pool
    in every block, contiguous (NCHW) weights, PyTorch's own max-pool. The same function as ``model`` (to float
    rounding); kept for the tests and benchmarks that compare the two."""
    original = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    layers = [
        nn.MaxPool2d(layer.kernel_size)
        if isinstance(layer, MaxPool2dKeepingIndices)
        else layer
        for layer in original.feature_net
    ]
    for i in range(len(layers) - 1):
        if isinstance(layers[i], nn.MaxPool2d) and isinstance(layers[i + 1], nn.ELU):
            layers[i], layers[i + 1] = layers[i + 1], layers[i]
    original.feature_net = nn.Sequential(*layers)
    return original


class C2D(SourceModel):
    """VGG-like 2-D CNN over the log-mel image (the original "VGGishEmoNet").

    5 blocks of conv2d 3×3 (32 filters, padding 1) → BN → ELU → max-pool (computed
    as BN → max-pool → ELU, the same function), then a
    global average pool (32 features) and a linear layer to 2 outputs. Frequency
    is pooled by 2 per block; time pools 4, 4, 5, 4, 4 are scaled by
    ``n_frames / 1360`` (see :func:`plan_pools`).

    ``hidden_layer=True`` adds FC 32→``hidden_units`` → ReLU before the output
    layer; this project's extension, so EmoMucs can fuse C2D at mid level (the
    original C2D's head is a single layer, so the paper has no C2D mid fusion).
    Without it, ``hidden`` is the identity and ``has_hidden_layer`` is False.

    Input ``(batch, n_mels, n_frames)``; output ``(batch, n_outputs)``, linear.

    Args:
        n_mels: mel bands.
        n_frames: frames per clip (sets the time pools).
        n_filters: filters of every conv layer.
        freq_pools: frequency pool per block.
        time_pools: time pool per block at ``reference_frames`` frames.
        reference_frames: frame count the time pools refer to (30 s in the
            original's source).
        hidden_layer: add the hidden FC layer.
        hidden_units: its units.
        dropout: dropout before the hidden FC layer (the original head has none).
        n_outputs: predicted values.
        pooling: ``global`` (the original): the last feature map averaged over
            frequency and time, ``n_filters`` features; ``time``: averaged over time
            only, ``n_filters`` × the rows the frequency pools leave (1 with the
            default pools, so set fewer, e.g. ``freq_pools: [2, 2, 2, 1, 1]``).
    """

    name = "C2D"

    @capture_init
    def __init__(
        self,
        n_mels: int = 40,
        n_frames: int = 862,
        n_filters: int = 32,
        freq_pools: Sequence[int] = (2, 2, 2, 2, 2),
        time_pools: Sequence[int] = (4, 4, 5, 4, 4),
        reference_frames: int = 1360,
        hidden_layer: bool = False,
        hidden_units: int = 32,
        dropout: float = 0.0,
        n_outputs: int = 2,
        pooling: str = "global",
    ) -> None:
        super().__init__()
        if pooling not in ("global", "time"):
            raise ValueError(
                f"C2D: pooling must be 'global' or 'time', got {pooling!r}"
            )
        self.n_mels, self.n_frames = int(n_mels), int(n_frames)
        if self.n_mels < 1 or self.n_frames < 1:
            raise ValueError(
                f"C2D: need at least one mel band and one frame, "
                f"got {self.n_mels} × {self.n_frames}"
            )
        self.pool_sizes = plan_pools(
            self.n_mels, self.n_frames, freq_pools, time_pools, reference_frames
        )
        blocks: list[nn.Module] = []
        in_channels = 1
        for pool in self.pool_sizes:
            # The original's order is conv → BN → ELU → pool. ELU is strictly
            # increasing, so it commutes with the max: pooling first gives the same
            # values and gradients (tests/models/test_c2d_speed.py) with the ELU on a
            # sixth of the cells.
            blocks += [
                nn.Conv2d(in_channels, n_filters, kernel_size=3, padding=1),
                nn.BatchNorm2d(n_filters),
                MaxPool2dKeepingIndices(pool),
                nn.ELU(),
            ]
            in_channels = n_filters
        height = self.n_mels
        for f_pool, _ in self.pool_sizes:
            height //= f_pool
        # "time" keeps the last block's frequency rows apart: global pooling makes
        # the features blind to where in frequency a pattern sits, which only the
        # padding at the map's edges can tell the filters
        rows = 1 if pooling == "global" else height
        average = nn.AdaptiveAvgPool2d(1 if pooling == "global" else (rows, 1))
        blocks += [average, nn.Flatten(1)]
        self.pooling = pooling
        self.feature_net = nn.Sequential(nn.Unflatten(1, (1, self.n_mels)), *blocks)
        self.feature_size = int(n_filters) * rows
        self.has_hidden_layer = bool(hidden_layer)
        if self.has_hidden_layer:
            self.hidden_net = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(self.feature_size, hidden_units),
                nn.ReLU(),
            )
            self.hidden_size = int(hidden_units)
        else:
            self.hidden_net = nn.Identity()
            self.hidden_size = self.feature_size
        self.output_net = nn.Linear(self.hidden_size, n_outputs)
        self.n_outputs = int(n_outputs)
        self.apply(init_weights)
        # Channels-last (NHWC) conv weights make every feature map NHWC, where the
        # batch-norm, pool and ELU kernels run vectorised over the filters: 3.5x
        # faster training steps on CPU (benchmarks/training.py). Copies of the
        # weights (state dicts, optimiser moments, .to(device)) keep the layout.
        self.to(memory_format=torch.channels_last)

    def check_input(self, x: torch.Tensor) -> None:
        expected = (self.n_mels, self.n_frames)
        if x.ndim != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"{self.name}: expected input (batch, {expected[0]} mels, "
                f"{expected[1]} frames), got {tuple(x.shape)}"
            )
