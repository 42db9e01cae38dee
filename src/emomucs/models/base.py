"""The interface shared by every single-source model, so fusion can cut it anywhere."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn


def init_weights(module: nn.Module) -> None:
    """Kaiming-uniform for convolutions, Xavier-uniform for linear layers.

    This is the original code's scheme for C1D; the biases keep PyTorch's
    defaults, as there. Use it with ``model.apply(init_weights)``.
    """
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        nn.init.kaiming_uniform_(module.weight)
    elif isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)


def plain_copy(value: Any, where: str = "kwargs") -> Any:
    """Return ``value`` as plain Python (str/int/float/bool/None, list, dict).

    Tuples become lists, so the result survives ``torch.load(weights_only=True)``
    and compares equal after the round trip.

    Raises:
        TypeError: if something in ``value`` is not plain, naming where it is.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain_copy(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a string")
            out[key] = plain_copy(v, f"{where}.{key}")
        return out
    raise TypeError(
        f"{where}: {type(value).__name__} is not a plain Python value "
        "(str, int, float, bool, None, list or dict)"
    )


_Init = TypeVar("_Init", bound=Callable[..., None])


def capture_init(init: _Init) -> _Init:
    """Record a model constructor's arguments in ``self.init_kwargs``, for checkpoints.

    Like :func:`demucs.states.capture_init`, but the arguments are bound to the
    signature with the defaults filled in and stored as plain Python
    (:func:`plain_copy`): a checkpoint names every argument, so it rebuilds the
    same network after a default changes, and loads with ``weights_only=True``.

    Raises:
        TypeError: if an argument is not plain Python, naming it.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(list(bound.arguments.items())[1:])  # without self
        init(self, *args, **kwargs)
        self.init_kwargs = plain_copy(arguments, f"{type(self).__name__} kwargs")

    return wrapper  # type: ignore[return-value]


class SourceModel(nn.Module):
    """A network in three stages that fusion can cut between.

    Subclasses build three submodules, ``feature_net``, ``hidden_net`` and
    ``output_net``, and set ``feature_size``, ``hidden_size``, ``n_outputs`` and
    ``has_hidden_layer``; ``forward(x) == output(hidden(features(x)))``.

    Attributes:
        name: the model's name in the registry.
        init_kwargs: the constructor's arguments as plain Python, for checkpoints
            (set by :func:`capture_init` on the subclass' ``__init__``).
    """

    name: str = ""
    feature_size: int
    hidden_size: int
    n_outputs: int
    has_hidden_layer: bool
    init_kwargs: dict[str, Any]

    feature_net: nn.Module
    hidden_net: nn.Module
    output_net: nn.Module

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` when ``x`` does not have the shape the model expects."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened convolutional features, ``(batch, feature_size)``."""
        self.check_input(x)
        return self.feature_net(x)

    def hidden(self, f: torch.Tensor) -> torch.Tensor:
        """The first block of the head, ``(batch, hidden_size)``.

        The identity when the model has no hidden layer (C2D by default).
        """
        return self.hidden_net(f)

    def output(self, h: torch.Tensor) -> torch.Tensor:
        """The linear prediction layer, ``(batch, n_outputs)``."""
        return self.output_net(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict ``(batch, n_outputs)`` values (linear, no squashing)."""
        return self.output(self.hidden(self.features(x)))

    def modules_up_to(self, cut: str) -> list[nn.Module]:
        """The stages a forward pass that stops after ``cut`` goes through.

        Args:
            cut: ``"features"``, ``"hidden"`` or ``"output"``.
        """
        stages = {
            "features": [self.feature_net],
            "hidden": [self.feature_net, self.hidden_net],
            "output": [self.feature_net, self.hidden_net, self.output_net],
        }
        if cut not in stages:
            raise ValueError(f"unknown cut {cut!r}; expected one of {list(stages)}")
        return stages[cut]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters an optimiser should update (those with ``requires_grad``)."""
        return [p for p in self.parameters() if p.requires_grad]

    def extra_repr(self) -> str:
        return f"feature_size={self.feature_size}, hidden_size={self.hidden_size}"
