"""Torch models: C1D, WaveC1D, C2D and the EmoMucs fusion of source networks.

Torch only: no I/O, no Kedro. Configs name a model; :func:`build_model` builds it,
and :func:`to_checkpoint`/:func:`from_checkpoint` save and rebuild it.
"""

from emomucs.models.base import SourceModel, init_weights
from emomucs.models.c1d import C1D
from emomucs.models.c2d import C2D
from emomucs.models.fusion import FUSIONS, EmoMucs
from emomucs.models.registry import (
    MODEL_REGISTRY,
    build_model,
    from_checkpoint,
    to_checkpoint,
)
from emomucs.models.wave import WaveC1D

__all__ = [
    "C1D",
    "C2D",
    "FUSIONS",
    "MODEL_REGISTRY",
    "EmoMucs",
    "SourceModel",
    "WaveC1D",
    "build_model",
    "from_checkpoint",
    "init_weights",
    "to_checkpoint",
]
