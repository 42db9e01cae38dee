"""WaveC1D: C1D on a learnable filterbank, so it reads raw waveforms.

This project's extension: the original code has no waveform model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from emomucs.models.base import SourceModel, capture_init, init_weights
from emomucs.models.c1d import conv1d_body, dense_head

FILTERBANK_INITS = ("mel", "random")


def hz_to_mel(hz: float) -> float:
    """HTK mel scale."""
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: float) -> float:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def gabor_pairs(
    n_filters: int, kernel_size: int, sample_rate: int, f_min: float, f_max: float
) -> torch.Tensor:
    """Hann-windowed cosine/sine pairs at mel-spaced centre frequencies.

    Returns:
        ``(2 * n_filters, 1, kernel_size)`` weights, cosine then sine per band,
        so the pair's magnitude is the band's short-time amplitude, as in an STFT.
    """
    mels = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_filters + 2)
    # Inner points, as a mel filterbank's centres (the ends are its edges).
    centres = torch.tensor([mel_to_hz(float(m)) for m in mels[1:-1]])
    t = torch.arange(kernel_size, dtype=torch.float32) - kernel_size / 2
    window = torch.hann_window(kernel_size, periodic=True)
    phase = 2 * math.pi * centres[:, None] * t[None, :] / sample_rate
    pairs = torch.stack([torch.cos(phase), torch.sin(phase)], dim=1) * window
    return pairs.reshape(2 * n_filters, 1, kernel_size)


class LogFilterbank(nn.Module):
    """Learnable filterbank: strided conv in quadrature pairs → magnitude → log.

    ``(batch, samples)`` → ``(batch, n_filters, frames)``. Each band is a pair of
    filters whose magnitude ``sqrt(a² + b²)`` does not flicker with the signal's
    phase (a single real filter sampled every ``stride`` samples would alias);
    ``log(1 + magnitude)`` compresses it like the dB scale of a log-mel, and a
    batch-norm per band puts it on the scale the C1D body expects.

    Args:
        n_filters: bands.
        kernel_size: filter length in samples (the STFT's n_fft).
        stride: hop in samples.
        sample_rate: of the input, used by the ``"mel"`` initialisation.
        init: ``"mel"`` (windowed sinusoids at mel-spaced centres, so training
            starts near a log-mel spectrogram) or ``"random"`` (Kaiming-uniform).
        f_min: lowest band edge for ``"mel"``, Hz.
        f_max: highest band edge for ``"mel"``, Hz; ``None`` for Nyquist.
    """

    def __init__(
        self,
        n_filters: int,
        kernel_size: int,
        stride: int,
        sample_rate: int,
        init: str = "mel",
        f_min: float = 0.0,
        f_max: float | None = None,
    ) -> None:
        super().__init__()
        if init not in FILTERBANK_INITS:
            raise ValueError(
                f"WaveC1D: unknown filterbank init {init!r}; "
                f"expected one of {FILTERBANK_INITS}"
            )
        f_max = sample_rate / 2 if f_max is None else f_max
        if not 0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(
                f"WaveC1D: need 0 <= f_min < f_max <= {sample_rate / 2} Hz, "
                f"got f_min={f_min}, f_max={f_max}"
            )
        self.n_filters = n_filters
        # Centred frames, as librosa's STFT (center=True): 1 + samples // stride.
        self.conv = nn.Conv1d(
            1, 2 * n_filters, kernel_size, stride=stride, padding=kernel_size // 2,
            bias=False,
        )  # fmt: skip
        if init == "mel":
            with torch.no_grad():
                self.conv.weight.copy_(
                    gabor_pairs(n_filters, kernel_size, sample_rate, f_min, f_max)
                )
        else:
            nn.init.kaiming_uniform_(self.conv.weight)
        self.norm = nn.BatchNorm1d(n_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.unsqueeze(1))
        y = y.reshape(y.shape[0], self.n_filters, 2, y.shape[-1])
        # The epsilon keeps the square root's gradient finite on digital silence.
        magnitude = torch.sqrt(y.pow(2).sum(dim=2) + 1e-8)
        return self.norm(torch.log1p(magnitude))


class WaveC1D(SourceModel):
    """C1D on raw audio: a learnable log filterbank replaces the log-mel.

    Input ``(batch, n_samples)`` of mono audio; the filterbank (``n_filters``
    bands, ``kernel_size``/``stride`` as n_fft/hop) gives ``(batch, n_filters,
    frames)``, with 862 frames for 20 s at 22.05 kHz as the log-mel has, which feeds
    the C1D body and head unchanged. This project's extension.

    Args:
        sample_rate: of the input audio.
        n_samples: samples per clip; fixes the frame count and flattened size.
        n_filters: filterbank bands (C1D's mel bands).
        kernel_size: filter length in samples.
        stride: hop in samples.
        filterbank_init: ``"mel"`` or ``"random"``, see :class:`LogFilterbank`.
        f_min: lowest band edge for the mel initialisation, Hz.
        f_max: highest band edge for the mel initialisation, Hz (``None``: Nyquist).
        n_filters_conv: filters of each C1D conv layer.
        conv_kernel_size: C1D conv kernel length, in frames.
        pool_size: C1D max-pool size and stride.
        hidden_units: units of the hidden FC layer.
        dropout: dropout before each FC layer.
        n_outputs: predicted values.
        pooling: how the C1D body ends, see :data:`emomucs.models.c1d.POOLINGS`.
    """

    name = "WaveC1D"

    @capture_init
    def __init__(
        self,
        sample_rate: int = 22050,
        n_samples: int = 441000,
        n_filters: int = 40,
        kernel_size: int = 1024,
        stride: int = 512,
        filterbank_init: str = "mel",
        f_min: float = 0.0,
        f_max: float | None = None,
        n_filters_conv: Sequence[int] = (32, 16),
        conv_kernel_size: int = 8,
        pool_size: int = 4,
        hidden_units: int = 64,
        dropout: float = 0.5,
        n_outputs: int = 2,
        pooling: str = "flatten",
    ) -> None:
        super().__init__()
        self.n_samples = int(n_samples)
        padding = kernel_size // 2
        self.n_frames = (self.n_samples + 2 * padding - kernel_size) // stride + 1
        front_end = LogFilterbank(
            n_filters, kernel_size, stride, sample_rate, filterbank_init, f_min, f_max
        )
        body, self.feature_size = conv1d_body(
            n_filters,
            self.n_frames,
            n_filters_conv,
            conv_kernel_size,
            pool_size,
            self.name,
            pooling,
        )
        # The body's and head's init first, so the filterbank keeps its own.
        body.apply(init_weights)
        self.feature_net = nn.Sequential(front_end, body)
        self.hidden_net, self.output_net = dense_head(
            self.feature_size, hidden_units, n_outputs, dropout
        )
        self.hidden_net.apply(init_weights)
        self.output_net.apply(init_weights)
        self.hidden_size = int(hidden_units)
        self.n_outputs = int(n_outputs)
        self.has_hidden_layer = True

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.n_samples:
            raise ValueError(
                f"{self.name}: expected mono audio (batch, {self.n_samples} samples), "
                f"got {tuple(x.shape)}"
            )
