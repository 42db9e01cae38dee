"""Tiny HTDemucs models and local Demucs repos, so separation tests take seconds."""

from __future__ import annotations

from pathlib import Path

import torch

from emomucs import SOURCES
from emomucs.separation import package_model

TINY_RATE = 8000


def tiny_htdemucs(seed: int = 0, **overrides) -> torch.nn.Module:
    """An HTDemucs with 8 channels and depth 2 at 8 kHz: 24 k parameters."""
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    kwargs = {
        "audio_channels": 2,
        "channels": 8,
        "depth": 2,
        "nfft": 512,
        "t_layers": 1,
        "t_heads": 2,
        "samplerate": TINY_RATE,
        "segment": 1,
    }
    kwargs.update(overrides)
    return HTDemucs(list(SOURCES), **kwargs).eval()


def write_repo(folder: Path, name: str, model: torch.nn.Module) -> Path:
    """A local Demucs repo written by Demucs' own ``save_with_checksum``."""
    from demucs.states import save_with_checksum

    folder.mkdir(parents=True, exist_ok=True)
    save_with_checksum(package_model(model, {}), folder / f"{name}.th")
    (written,) = folder.glob(f"{name}-*.th")
    return written
