"""What one experiment variant trains, read from its namespace's parameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from torch import nn

from emomucs import SOURCES
from emomucs.models import build_model
from emomucs.models.fusion import FUSIONS as FUSION_CUTS

SINGLE_SOURCE_MODELS = ("C1D", "C2D", "WaveC1D")
STRATEGIES = ("full", "finetune", "freeze")
"""How EmoMucs' source networks start: from scratch, or from single-source models
(trained on, or frozen). The one list of strategy names."""
FUSIONS = tuple(FUSION_CUTS)
"""EmoMucs' fusion levels, as the model defines them (:data:`emomucs.models.fusion.
FUSIONS`): the one list of fusion names."""
MIX = "mix"


@dataclass(frozen=True)
class ExperimentSpec:
    """One variant: a model, the sources it reads and how it is trained.

    Attributes:
        model: ``"C1D"``, ``"C2D"``, ``"WaveC1D"`` (one input) or ``"EmoMucs"``.
        sources: Inputs, in order: ``["mix"]`` for a baseline, one stem for a
            single-source model, several stems for EmoMucs.
        source_model: EmoMucs' source network (one of the single-source models).
        fusion: EmoMucs' fusion, ``"early"``, ``"mid"``, ``"late"`` or
            ``"attention"``.
        strategy: ``"full"`` (from scratch), ``"finetune"`` or ``"freeze"`` (source
            networks start from single-source models of the same inner split).
        model_kwargs: This variant's own arguments of the (source) network, e.g.
            C2D's ``hidden_layer``; they override ``network_kwargs``.
        network_kwargs: Arguments shared by every variant of this network (the
            ``networks`` parameters), so single-source models and EmoMucs' source
            networks match.
        fusion_dropout: EmoMucs head dropout (the poster's 0.3).
        units_per_source: EmoMucs head units per source.
    """

    model: str
    sources: tuple[str, ...]
    source_model: str | None = None
    fusion: str | None = None
    strategy: str = "full"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    network_kwargs: dict[str, Any] = field(default_factory=dict)
    fusion_dropout: float = 0.3
    units_per_source: int = 32

    @classmethod
    def from_params(
        cls, params: dict[str, Any], networks: dict[str, Any] | None = None
    ) -> ExperimentSpec:
        """Build and check a spec from a namespace's ``experiment`` parameters.

        Args:
            params: The variant's parameters (any field but ``network_kwargs``).
            networks: Network name -> arguments shared by all its variants.

        Raises:
            ValueError: Unknown keys or values, or a combination that cannot train.
        """
        known = set(cls.__dataclass_fields__) - {"network_kwargs"}
        unknown = set(params) - known
        if unknown:
            raise ValueError(
                f"experiment parameters: unknown keys {sorted(unknown)}; "
                f"expected some of {sorted(known)}"
            )
        spec = cls(
            **{
                **params,
                "sources": tuple(params.get("sources", ())),
                "model_kwargs": dict(params.get("model_kwargs") or {}),
            }
        )
        shared = (networks or {}).get(spec.network) or {}
        spec = replace(spec, network_kwargs=dict(shared))
        spec.check()
        return spec

    def check(self) -> None:
        """Raise ``ValueError`` naming the variant and what does not fit."""
        where = f"experiment {self.label}"
        if not self.sources:
            raise ValueError(f"{where}: no sources")
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"{where}: unknown strategy {self.strategy!r}; expected {STRATEGIES}"
            )
        if self.model == "EmoMucs":
            if self.source_model not in SINGLE_SOURCE_MODELS:
                raise ValueError(
                    f"{where}: source_model must be one of {SINGLE_SOURCE_MODELS}, "
                    f"got {self.source_model!r}"
                )
            if self.fusion not in FUSIONS:
                raise ValueError(
                    f"{where}: fusion must be one of {FUSIONS}, got {self.fusion!r}"
                )
            if MIX in self.sources:
                raise ValueError(f"{where}: EmoMucs fuses stems, not the mix")
        elif self.model in SINGLE_SOURCE_MODELS:
            if len(self.sources) != 1:
                raise ValueError(f"{where}: a {self.model} reads exactly one source")
            if self.strategy != "full" or self.fusion or self.source_model:
                raise ValueError(
                    f"{where}: fusion, source_model and strategies other than "
                    "'full' apply to EmoMucs only"
                )
        else:
            raise ValueError(
                f"{where}: unknown model {self.model!r}; expected EmoMucs or one of "
                f"{SINGLE_SOURCE_MODELS}"
            )

    @property
    def network(self) -> str:
        """The single-source network: the model itself, or EmoMucs' source model."""
        return self.source_model if self.model == "EmoMucs" else self.model

    @property
    def pretrained(self) -> bool:
        """Whether source networks start from single-source models."""
        return self.strategy in ("finetune", "freeze")

    @property
    def label(self) -> str:
        """A human name, as in the paper's tables: ``C1D-M``, ``EmoMucs-C2D late
        freeze``, ``C1D (vocals)``, ``EmoMucs-C1D late freeze (vocals+drums)``; non-default
        network arguments follow in brackets."""
        if self.model != "EmoMucs":
            if self.sources == (MIX,):
                label = f"{self.model}-M"
            else:
                label = f"{self.model} ({'+'.join(self.sources)})"
        else:
            label = f"EmoMucs-{self.source_model} {self.fusion} {self.strategy}"
            if sorted(self.sources) != sorted(SOURCES):
                label += f" ({'+'.join(self.sources)})"
        if self.model_kwargs:
            settings = ", ".join(
                f"{k}={v}" for k, v in sorted(self.model_kwargs.items())
            )
            label += f" [{settings}]"
        return label

    def source_kwargs(self, shape_kwargs: dict[str, Any]) -> dict[str, Any]:
        """The single-source network's arguments: shared, then the variant's own,
        then the input shape."""
        return {**self.network_kwargs, **self.model_kwargs, **shape_kwargs}

    def build(self, shape_kwargs: dict[str, Any]) -> nn.Module:
        """A fresh, untrained model for inputs of this shape."""
        kwargs = self.source_kwargs(shape_kwargs)
        if self.model != "EmoMucs":
            return build_model(self.model, **kwargs)
        return build_model(
            "EmoMucs",
            source_model=self.source_model,
            source_kwargs=kwargs,
            sources=list(self.sources),
            fusion=self.fusion,
            dropout=self.fusion_dropout,
            units_per_source=self.units_per_source,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples), for artifacts and cache keys."""
        values = asdict(self)
        values["sources"] = list(self.sources)
        return values
