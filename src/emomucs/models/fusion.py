"""EmoMucs: one network per separated source, fused early, mid, late or by attention."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from emomucs.models.base import SourceModel, capture_init, init_weights, plain_copy

FUSIONS = {
    "early": "features",
    "mid": "hidden",
    "late": "output",
    "attention": "hidden",
}
"""Fusion → where each source network is cut (its method giving the fused part).

Attention cuts at ``hidden``: the hidden layer where a network has one (C1D), its
convolutional features where it has none (C2D's hidden layer is the identity).
"""


def _own_networks(
    source_networks: Mapping[str, Mapping[str, Any]] | None, sources: list[str]
) -> dict[str, dict[str, Any]]:
    """``source_networks`` as plain values, checked against ``sources``."""
    own = plain_copy(dict(source_networks or {}), "source_networks")
    unknown = sorted(set(own) - set(sources))
    if unknown:
        raise ValueError(
            f"EmoMucs: source_networks names {unknown}, not among {sources}"
        )
    for source, entry in own.items():
        if set(entry) != {"model", "kwargs"} or entry["model"] == EmoMucs.name:
            raise ValueError(
                f"EmoMucs: source_networks.{source} must be {{model: <a "
                f"single-source network>, kwargs: {{...}}}}, got {entry}"
            )
    return own


class AttentionHead(nn.Module):
    """Attention over sources, one softmax per output dimension.

    Each source's part is projected to an embedding of ``embedding_size`` (its own
    projection: dropout → FC → tanh). A scoring network shared by the sources (FC →
    tanh → FC ``n_outputs``: one learned query per dimension) scores every
    embedding, and a softmax over the sources turns each dimension's scores into
    weights. A readout shared by the sources (dropout → FC → tanh, one row per
    dimension) gives each source's own prediction of each dimension on the
    labels' [-1, 1] scale, and a dimension's prediction is the weighted sum of its
    sources' predictions.

    Why bounded per-source predictions rather than a linear readout of the weighted
    sum of embeddings: with a linear readout any weight can be undone by scaling an
    embedding, so the weights need not say which source is used (on a corpus where
    one stem carries each label they came out near-uniform). A weighted mean of
    bounded predictions can only reach a large label by weighting the sources that
    predict it, so a track's weights say how much each source's own prediction
    counts in the model's (a source's effect is its weight times its prediction:
    a weighted source that predicts near 0 moves the result little).

    Input: the concatenated source parts ``(batch, sum of part sizes)``, as
    :meth:`EmoMucs.fuse` gives them, so the freeze shortcut trains this head alone.

    Args:
        n_sources: sources fused.
        part_size: size of each source's part, or one size per source (source
            networks of different kinds or arguments).
        embedding_size: size of each source's embedding (and of the scoring
            network's hidden layer).
        n_outputs: predicted values, each with its own weights over sources.
        dropout: dropout on the source parts and on the embeddings read out.
    """

    def __init__(
        self,
        n_sources: int,
        part_size: int | Sequence[int],
        embedding_size: int,
        n_outputs: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.n_sources = int(n_sources)
        if isinstance(part_size, int):
            part_size = [part_size] * self.n_sources
        self.part_sizes = [int(size) for size in part_size]
        if len(self.part_sizes) != self.n_sources:
            raise ValueError(
                f"AttentionHead: {len(self.part_sizes)} part sizes for "
                f"{self.n_sources} sources"
            )
        self.project = nn.ModuleList(
            nn.Sequential(
                nn.Dropout(dropout), nn.Linear(size, embedding_size), nn.Tanh()
            )
            for size in self.part_sizes
        )
        self.score = nn.Sequential(
            nn.Linear(embedding_size, embedding_size),
            nn.Tanh(),
            nn.Linear(embedding_size, n_outputs),
        )
        self.dropout = nn.Dropout(dropout)
        self.readout = nn.Linear(embedding_size, n_outputs)

    def embed_and_weigh(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings ``(batch, n_sources, embedding_size)`` and weights
        ``(batch, n_outputs, n_sources)``, each row summing to 1."""
        expected = sum(self.part_sizes)
        if fused.ndim != 2 or fused.shape[1] != expected:
            raise ValueError(
                f"AttentionHead: expected fused parts (batch, {expected}), "
                f"got {tuple(fused.shape)}"
            )
        parts = torch.split(fused, self.part_sizes, dim=1)
        embeddings = torch.stack(
            [project(part) for part, project in zip(parts, self.project, strict=True)],
            dim=1,
        )
        weights = torch.softmax(self.score(embeddings), dim=1).transpose(1, 2)
        return embeddings, weights

    def source_predictions(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Each source's prediction of each dimension, ``(batch, n_outputs,
        n_sources)``, in [-1, 1]."""
        return torch.tanh(self.readout(self.dropout(embeddings))).transpose(1, 2)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        """Predict ``(batch, n_outputs)`` values from the fused source parts."""
        embeddings, weights = self.embed_and_weigh(fused)
        return (weights * self.source_predictions(embeddings)).sum(dim=2)

    def weights(self, fused: torch.Tensor) -> torch.Tensor:
        """Each dimension's weights over sources, ``(batch, n_outputs, n_sources)``."""
        return self.embed_and_weigh(fused)[1]


class EmoMucs(nn.Module):
    """Source networks, their parts concatenated into a fusion head.

    Every source runs ``source_model`` with ``source_kwargs`` unless
    ``source_networks`` gives it a network of its own (another kind, e.g. C2D for
    the vocals and C1D for the drums, or other arguments): the sources need not be
    alike, only read inputs of one shape (C1D and C2D both read log-mels).

    Input ``(batch, n_sources, ...)``: source ``i`` goes to ``sources[i]``'s network,
    so ``(batch, n_sources, n_mels, frames)`` for C1D/C2D and ``(batch, n_sources,
    samples)`` for WaveC1D. Fusion: ``early`` concatenates each network's
    ``features``, ``mid`` its ``hidden`` layer, ``late`` its outputs; the head is
    dropout → FC (``units_per_source`` × n_sources) → ReLU → dropout → FC
    ``n_outputs``, linear. ``attention`` cuts at the hidden layer (the features
    where there is none) and its head is an :class:`AttentionHead` with embeddings
    of ``units_per_source``: per track, a weight per source and output dimension
    (:meth:`attention_weights`), and each
    dimension is predicted as the weighted sum of the sources' own predictions.

    Frozen source networks (:meth:`freeze_sources`) stay in eval mode through
    ``.train()``: the original left their batch-norm and dropout training.

    Args:
        source_model: registry name of the source network (not ``"EmoMucs"``).
        source_kwargs: its constructor arguments, the same for every source.
        sources: source names, in the order of the input's source axis.
        fusion: ``"early"``, ``"mid"``, ``"late"`` or ``"attention"``.
        dropout: dropout before each head layer (the poster's 0.3).
        units_per_source: head hidden units per source; for attention, the size of
            each source's embedding.
        n_outputs: predicted values.
        source_networks: source → ``{"model": name, "kwargs": {...}}`` for the
            sources whose network differs from ``source_model``/``source_kwargs``
            (the kwargs are complete, not merged with ``source_kwargs``).

    Raises:
        ValueError: on an unknown fusion or model, no or repeated sources, or
            ``mid`` fusion over a network without a hidden layer (C2D needs
            ``hidden_layer: true``; it is not switched on silently, as that would
            change the single-source models whose weights are loaded).
    """

    name = "EmoMucs"

    @capture_init
    def __init__(
        self,
        source_model: str,
        source_kwargs: Mapping[str, Any] | None,
        sources: Sequence[str],
        fusion: str,
        dropout: float = 0.3,
        units_per_source: int = 32,
        n_outputs: int = 2,
        source_networks: Mapping[str, Mapping[str, Any]] | None = None,
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
        own = _own_networks(source_networks, sources)
        self.source_model = source_model
        self.sources = sources
        self.fusion = fusion
        self.cut = FUSIONS[fusion]
        self.source_networks = {
            s: own.get(s, {"model": source_model, "kwargs": source_kwargs})
            for s in sources
        }
        self.source_nets = nn.ModuleDict(
            {
                s: build_model(net["model"], **net["kwargs"])
                for s, net in self.source_networks.items()
            }
        )
        for source, net in self.source_nets.items():
            described = self.source_networks[source]
            if not isinstance(net, SourceModel):
                raise ValueError(
                    f"EmoMucs: {described['model']} ({source}) is not a "
                    "single-source model"
                )
            if fusion == "mid" and not net.has_hidden_layer:
                raise ValueError(
                    f"EmoMucs: mid fusion needs a hidden layer in each source "
                    f"network, and {described['model']} ({source}) with "
                    f"{described['kwargs']} has none (for C2D set hidden_layer: true)"
                )
        self.part_sizes = [
            {
                "features": net.feature_size,
                "hidden": net.hidden_size,
                "output": net.n_outputs,
            }[self.cut]
            for net in self.source_nets.values()
        ]
        self.fused_size = sum(self.part_sizes)
        if fusion == "attention":
            self.head = AttentionHead(
                len(sources), self.part_sizes, int(units_per_source), n_outputs, dropout
            )
        else:
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

    def part_slices(self) -> dict[str, slice]:
        """Each source's columns in :meth:`fuse`'s output (sizes may differ)."""
        slices, start = {}, 0
        for source, size in zip(self.sources, self.part_sizes, strict=True):
            slices[source] = slice(start, start + size)
            start += size
        return slices

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

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Each output dimension's weights over sources, ``(batch, n_outputs,
        n_sources)``, summing to 1 over sources (sources in :attr:`sources`' order).

        Raises:
            ValueError: for a fusion other than ``attention``.
        """
        if not isinstance(self.head, AttentionHead):
            raise ValueError(
                f"EmoMucs: {self.fusion} fusion has no attention weights; "
                "only fusion 'attention' does"
            )
        return self.head.weights(self.fuse(x))

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
                wanted = self.source_networks[source]["model"]
                if state["model"] != wanted:
                    raise ValueError(
                        f"source {source!r}: checkpoint is a {state['model']}, "
                        f"this EmoMucs uses {wanted}"
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
                    f"source {source!r}: state does not fit "
                    f"{self.source_networks[source]['model']} "
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
