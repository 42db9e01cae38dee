"""One model, trained with Adam on MSE and early-stopped on its validation loss."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from emomucs.device import resolve_device
from emomucs.progress import quiet_progress


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: training diverged or the data is broken."""


@dataclass(frozen=True)
class TrainOptions:
    """Optimiser and stopping settings; the defaults are the original code's.

    Attributes:
        learning_rate: Adam's step size.
        betas: Adam's moment decay rates.
        batch_size: Training batch size.
        eval_batch_size: Validation and test batch size.
        max_epochs: Upper bound on epochs.
        patience: Epochs without a lower validation loss before stopping.
        progress: Show a tqdm bar over epochs (tqdm hides it when not on a
            terminal, as in CI, even when true).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``… or ``"auto"`` (CUDA when
            available). Data stay on the CPU; batches move to the device.
        weight_decay: Decoupled weight decay (AdamW); 0 is plain Adam, as the
            original.
        loss_reduction: ``"sum"`` (the original: the batch's summed squared
            error) or ``"mean"`` (per value).
    """

    learning_rate: float = 0.005
    betas: tuple[float, float] = (0.9, 0.999)
    batch_size: int = 64
    eval_batch_size: int = 32
    max_epochs: int = 10_000
    patience: int = 15
    progress: bool = True
    device: str = "cpu"
    weight_decay: float = 0.0
    loss_reduction: str = "sum"

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name} must be at least 1")
        if self.weight_decay < 0:
            raise ValueError("training.weight_decay must not be negative")
        if self.loss_reduction not in ("sum", "mean"):
            raise ValueError(
                f"training.loss_reduction must be 'sum' or 'mean', "
                f"got {self.loss_reduction!r}"
            )

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainOptions:
        """Build from a parameters dict, ignoring keys that are not options."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in params.items() if k in names}
        if "betas" in kwargs:
            kwargs["betas"] = tuple(float(b) for b in kwargs["betas"])
        return cls(**kwargs)


@dataclass
class TrainResult:
    """What early stopping kept.

    Attributes:
        state: The model's state at its best epoch (already loaded into it).
        best_epoch: 1-based epoch of the lowest validation loss.
        best_loss: That validation loss (mean squared error per value).
        history: ``{"epoch", "train_loss", "val_loss"}`` per epoch run.
    """

    state: dict[str, torch.Tensor]
    best_epoch: int
    best_loss: float
    history: list[dict[str, float]] = field(default_factory=list)


def batches(n: int, size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    """Index batches over ``n`` items, shuffled when a generator is given.

    A trailing batch of one joins the one before it: batch-norm cannot train on a
    single example.
    """
    order = torch.randperm(n, generator=generator) if generator else torch.arange(n)
    chunks = list(torch.split(order, size))
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-2] = torch.cat(chunks[-2:])
        chunks.pop()
    return chunks


def predict(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Outputs of ``model`` in eval mode on the model's device, ``(len(x), outputs)``
    on the CPU.

    Args:
        forward: What to compute instead of ``model(x)``, e.g. one of its parts
            (``EmoMucs.fuse``); ``model`` still sets the mode and the device.
    """
    model.eval()
    device = next(model.parameters()).device
    forward = forward or model
    with torch.no_grad():
        outputs = [
            forward(x[index].to(device)).cpu()
            for index in batches(len(x), batch_size, None)
        ]
    return torch.cat(outputs)


def mean_squared_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor, size: int):
    """Mean squared error per predicted value, in eval mode."""
    return float(torch.mean((predict(model, x, size) - y) ** 2))


def train_model(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    options: TrainOptions,
    generator: torch.Generator | None = None,
    label: str = "model",
) -> TrainResult:
    """Train with Adam (AdamW with weight decay) on MSE; stop after ``patience``
    epochs without a lower validation MSE and restore the best weights (epoch 1's
    included).

    Frozen parameters (``requires_grad=False``) are left out of the optimiser; keeping
    frozen modules in eval mode is the model's job (see ``EmoMucs.freeze_sources``).

    Args:
        model: The network; trained in place and left with its best weights.
        train: Inputs and ``(n, outputs)`` targets to fit.
        validation: Inputs and targets for early stopping.
        options: Optimiser and stopping settings.
        generator: Shuffles the training batches (seed it for reproducible runs).
        label: Names the run in errors and the progress bar.

    Raises:
        NonFiniteLossError: A training or validation loss is NaN or infinite.
    """
    x_train, y_train = train
    x_val, y_val = validation
    device = resolve_device(options.device)
    model.to(device)
    # SourceModel and EmoMucs know which parameters their forward pass uses.
    if hasattr(model, "trainable_parameters"):
        parameters = list(model.trainable_parameters())
    else:
        parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError(f"{label}: the model has no trainable parameters")
    if options.weight_decay:
        optimiser = torch.optim.AdamW(
            parameters,
            lr=options.learning_rate,
            betas=options.betas,
            weight_decay=options.weight_decay,
        )
    else:
        optimiser = torch.optim.Adam(
            parameters, lr=options.learning_rate, betas=options.betas
        )
    # Summed in the original; the reported losses are per value, to compare splits.
    loss_fn = nn.MSELoss(reduction=options.loss_reduction)
    best_loss, best_epoch, best_state = math.inf, 0, None
    history = []
    epochs = tqdm(
        range(1, options.max_epochs + 1),
        desc=label,
        leave=False,
        disable=not options.progress or quiet_progress(),
    )
    for epoch in epochs:
        model.train()
        total = 0.0
        for step, index in enumerate(
            batches(len(x_train), options.batch_size, generator)
        ):
            optimiser.zero_grad()
            x, y = x_train[index].to(device), y_train[index].to(device)
            loss = loss_fn(model(x), y)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"{label}: training loss is {loss.item()} at epoch {epoch}, "
                    f"batch {step + 1}"
                )
            loss.backward()
            optimiser.step()
            total += loss.item() * (y.numel() if loss_fn.reduction == "mean" else 1)
        train_loss = total / y_train.numel()
        val_loss = mean_squared_error(model, x_val, y_val, options.eval_batch_size)
        if not math.isfinite(val_loss):
            raise NonFiniteLossError(
                f"{label}: validation loss is {val_loss} at epoch {epoch}"
            )
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        epochs.set_postfix(val=f"{val_loss:.4f}", best=best_epoch)
        if epoch - best_epoch >= options.patience:
            break
    epochs.close()
    model.load_state_dict(best_state)
    return TrainResult(best_state, best_epoch, best_loss, history)
