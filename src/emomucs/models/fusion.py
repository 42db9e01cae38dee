"""EmoMucs: one network per separated source, fused early, mid or late."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from emomucs.models.base import SourceModel, init_weights, plain_copy

FUSIONS = {"early": "features", "mid": "hidden", "late": "output"}
"""Fusion → where each source network is cut (its method giving the fused part)."""


class EmoMucs(nn.Module):
    """Source networks of one kind, their parts concatenated into a fusion head.

    Input ``(batch, n_sources, ...)``: source ``i`` goes to ``sources[i]``'s network,
    so ``(batch, n_sources, n_mels, frames)`` for C1D/C2D and ``(batch, n_sources,
    samples)`` for WaveC1D. Fusion: ``early`` concatenates each network's
    ``features``, ``mid`` its ``hidden`` layer, ``late`` its outputs; the head is
    dropout → FC (``units_per_source`` × n_sources) → ReLU → dropout → FC
    ``n_outputs``, linear.

    Frozen source networks (:meth:`freeze_sources`) stay in eval mode through
    ``.train()``: the original left their batch-norm and dropout training.

    Args:
        source_model: registry name of the source network (not ``"EmoMucs"``).
        source_kwargs: its constructor arguments, the same for every source.
        sources: source names, in the order of the input's source axis.
        fusion: ``"early"``, ``"mid"`` or ``"late"``.
        dropout: dropout before each head layer (the poster's 0.3).
        units_per_source: head hidden units per source.
        n_outputs: predicted values.

    Raises:
        ValueError: on an unknown fusion or model, no or repeated sources, or
            ``mid`` fusion over a network without a hidden layer (C2D needs
            ``hidden_layer: true``; it is not switched on silently, as that would
            change the single-source models whose weights are loaded).
    """

    name = "EmoMucs"

    def __init__(
        self,
        source_model: str,
        source_kwargs: Mapping[str, Any] | None,
        sources: Sequence[str],
        fusion: str,
        dropout: float = 0.3,
        units_per_source: int = 32,
        n_outputs: int = 2,
    ) -> None:
        # Imported here: the registry imports this module.
        from emomucs.models.registry import build_model

        super().__init__()
        source_kwargs = plain_copy(dict(source_kwargs or {}), "source_kwargs")
        sources = [str(s) for s in sources]
        if fusion not in FUSIONS:
            raise ValueError(
                f"EmoMucs: unknown fusion {fusion!r}; expected one of {list(FUSIONS)}"
            )
        if source_model == self.name:
            raise ValueError("EmoMucs: source_model cannot be EmoMucs itself")
        if not sources:
            raise ValueError("EmoMucs: no sources given")
        if len(set(sources)) != len(sources):
            raise ValueError(f"EmoMucs: repeated source names in {sources}")
        for source in sources:
            if not source or "." in source:
                raise ValueError(f"EmoMucs: source name {source!r} is empty or has '.'")
        self.init_kwargs = {
            "source_model": str(source_model),
            "source_kwargs": source_kwargs,
            "sources": sources,
            "fusion": str(fusion),
            "dropout": float(dropout),
            "units_per_source": int(units_per_source),
            "n_outputs": int(n_outputs),
        }
        self.source_model = source_model
        self.sources = sources
        self.fusion = fusion
        self.cut = FUSIONS[fusion]
        self.source_nets = nn.ModuleDict(
            {s: build_model(source_model, **source_kwargs) for s in sources}
        )
        first = self.source_nets[sources[0]]
        if not isinstance(first, SourceModel):
            raise ValueError(f"EmoMucs: {source_model} is not a single-source model")
        if fusion == "mid" and not first.has_hidden_layer:
            raise ValueError(
                f"EmoMucs: mid fusion needs a hidden layer in each source network, "
                f"and {source_model} with {source_kwargs} has none "
                "(for C2D set source_kwargs hidden_layer: true)"
            )
        part_size = {
            "features": first.feature_size,
            "hidden": first.hidden_size,
            "output": first.n_outputs,
        }[self.cut]
        self.fused_size = part_size * len(sources)
        head_units = int(units_per_source) * len(sources)
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(self.fused_size, head_units),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(head_units, n_outputs),
        )
        self.head.apply(init_weights)
        self.n_outputs = int(n_outputs)
        self._sources_frozen = False

    def _source_part(self, net: SourceModel, x: torch.Tensor) -> torch.Tensor:
        f = net.features(x)
        if self.cut == "features":
            return f
        h = net.hidden(f)
        return h if self.cut == "hidden" else net.output(h)

    def fuse(self, x: torch.Tensor) -> torch.Tensor:
        """The concatenated source parts the head reads, ``(batch, fused_size)``."""
        if x.ndim < 2 or x.shape[1] != len(self.sources):
            raise ValueError(
                f"EmoMucs: expected input (batch, {len(self.sources)} sources "
                f"{self.sources}, ...), got {tuple(x.shape)}"
            )
        parts = [
            self._source_part(net, x[:, i])
            for i, net in enumerate(self.source_nets.values())
        ]
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict ``(batch, n_outputs)`` values from ``(batch, n_sources, ...)``."""
        return self.head(self.fuse(x))

    def load_source_states(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """Copy single-source models' weights into the source networks.

        Args:
            states: source name → a state dict, or a checkpoint from
                :func:`emomucs.models.to_checkpoint` (then its model name and
                kwargs must match this model's ``source_model``/``source_kwargs``),
                for exactly this model's sources.

        Raises:
            ValueError: naming the source, when sources are missing or unknown or
                a state does not fit.
        """
        missing = [s for s in self.sources if s not in states]
        unknown = [s for s in states if s not in self.sources]
        if missing or unknown:
            raise ValueError(
                f"EmoMucs: states must cover sources {self.sources}; "
                f"missing {missing}, unknown {unknown}"
            )
        for source in self.sources:
            net = self.source_nets[source]
            state = states[source]
            if {"model", "kwargs", "state"} <= set(state):
                if state["model"] != self.source_model:
                    raise ValueError(
                        f"source {source!r}: checkpoint is a {state['model']}, "
                        f"this EmoMucs uses {self.source_model}"
                    )
                if plain_copy(state["kwargs"]) != net.init_kwargs:
                    raise ValueError(
                        f"source {source!r}: checkpoint kwargs {state['kwargs']} "
                        f"differ from this EmoMucs' {net.init_kwargs}"
                    )
                state = state["state"]
            try:
                net.load_state_dict(state)
            except RuntimeError as err:
                raise ValueError(
                    f"source {source!r}: state does not fit {self.source_model} "
                    f"with {net.init_kwargs}: {err}"
                ) from err

    def freeze_sources(self) -> None:
        """Fix the source networks: no gradients, and eval mode even under ``.train()``.

        Only the fusion head then trains (the "freeze" strategy).
        """
        for p in self.source_nets.parameters():
            p.requires_grad_(False)
        self._sources_frozen = True
        self.source_nets.eval()

    def unfreeze_sources(self) -> None:
        """Undo :meth:`freeze_sources`."""
        for p in self.source_nets.parameters():
            p.requires_grad_(True)
        self._sources_frozen = False
        self.source_nets.train(self.training)

    @property
    def sources_frozen(self) -> bool:
        """Whether :meth:`freeze_sources` is in effect."""
        return self._sources_frozen

    def train(self, mode: bool = True) -> EmoMucs:
        super().train(mode)
        if self._sources_frozen:
            self.source_nets.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters an optimiser should update.

        Those with ``requires_grad`` that the forward pass uses: the head, plus the
        source networks up to the fusion's cut unless frozen (early fusion never
        uses a source network's head, so it is left out).
        """
        modules: list[nn.Module] = [self.head]
        for net in self.source_nets.values():
            modules += net.modules_up_to(self.cut)
        params = [p for m in modules for p in m.parameters()]
        return [p for p in params if p.requires_grad]

    def extra_repr(self) -> str:
        return f"fusion={self.fusion!r}, sources={self.sources}"
