"""The one device resolver: training, separation and separator training share it."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; anything else as torch reads it
    (``cpu``, ``cuda``, ``cuda:1``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
