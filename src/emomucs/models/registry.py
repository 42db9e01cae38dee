"""Model registry and self-describing checkpoints (name + init kwargs + state)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from emomucs.models.base import plain_copy
from emomucs.models.c1d import C1D
from emomucs.models.c2d import C2D
from emomucs.models.fusion import EmoMucs
from emomucs.models.wave import WaveC1D

MODEL_REGISTRY: dict[str, type[nn.Module]] = {
    "C1D": C1D,
    "WaveC1D": WaveC1D,
    "C2D": C2D,
    "EmoMucs": EmoMucs,
}
"""Registry name → model class; configs name models by these keys."""


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with its constructor's ``kwargs``.

    Raises:
        ValueError: for a name not in :data:`MODEL_REGISTRY`.
    """
    if name not in MODEL_REGISTRY:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(MODEL_REGISTRY)}"
        )
    return MODEL_REGISTRY[name](**kwargs)


def to_checkpoint(model: nn.Module) -> dict[str, Any]:
    """Describe ``model`` fully: ``{"model": name, "kwargs": init args, "state": ...}``.

    The state's tensors are detached CPU copies, so the checkpoint does not change
    when the model trains on, and it loads with ``torch.load(weights_only=True)``.
    Whether source networks are frozen is training state and is not stored.

    Raises:
        ValueError: if the model's class is not the registered one for its name.
    """
    name = getattr(model, "name", None)
    if MODEL_REGISTRY.get(name) is not type(model):
        raise ValueError(
            f"{type(model).__name__} is not a registered model "
            f"(known: {', '.join(MODEL_REGISTRY)})"
        )
    return {
        "model": name,
        "kwargs": plain_copy(model.init_kwargs, f"{name} kwargs"),
        "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }


def from_checkpoint(checkpoint: Mapping[str, Any]) -> nn.Module:
    """Rebuild a model from :func:`to_checkpoint`'s dict, in eval mode.

    Raises:
        ValueError: if keys are missing, the name is unknown or the state does
            not fit the rebuilt model.
    """
    missing = [k for k in ("model", "kwargs", "state") if k not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint lacks {missing}; has {list(checkpoint)}")
    name = checkpoint["model"]
    model = build_model(name, **checkpoint["kwargs"])
    try:
        model.load_state_dict(checkpoint["state"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint state does not fit {name}: {err}") from err
    return model.eval()
