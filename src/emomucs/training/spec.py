"""What one experiment variant trains, read from its namespace's parameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from torch import nn

from emomucs import SOURCES
from emomucs.models import build_model
from emomucs.models.fusion import FUSIONS as FUSION_CUTS

SINGLE_SOURCE_MODELS = ("C1D", "C2D", "WaveC1D")
READS = {
    "C1D": ("log_mel", "chroma", "cqt"),
    "C2D": ("log_mel", "chroma", "cqt"),
    "WaveC1D": ("waveform",),
}
"""Single-source network -> the feature representations it reads, its default
first. C1D and C2D read any (bands, frames) image: log-mel, chroma or constant-Q."""
PER_SOURCE_KEYS = ("source_model", "model_kwargs")
"""What a variant's ``per_source`` entry may set for one source."""
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
        per_source: EmoMucs only: source -> ``{source_model, model_kwargs}`` for
            sources whose network differs (source-specific settings, e.g. C2D for
            the vocals of a C1D EmoMucs). A source with another ``source_model``
            gets that network's shared arguments plus its own ``model_kwargs``; one
            with only ``model_kwargs`` gets them on top of the variant's.
        per_source_network_kwargs: The shared arguments (``networks``) of the other
            networks ``per_source`` names.
        representation: The input features (``log_mel``, ``chroma``, ``cqt``,
            ``waveform``); None: the network's default (:data:`READS`).
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
    per_source: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_source_network_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    representation: str | None = None

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
        known = set(cls.__dataclass_fields__) - set(DERIVED)
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
                "per_source": {
                    str(source): dict(entry or {})
                    for source, entry in (params.get("per_source") or {}).items()
                },
            }
        )
        networks = networks or {}
        others = {
            entry["source_model"]
            for entry in spec.per_source.values()
            if entry.get("source_model", spec.network) != spec.network
        }
        spec = replace(
            spec,
            network_kwargs=dict(networks.get(spec.network) or {}),
            per_source_network_kwargs={
                name: dict(networks.get(name) or {}) for name in sorted(others)
            },
        )
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
            self._check_per_source(where)
        elif self.model in SINGLE_SOURCE_MODELS:
            if len(self.sources) != 1:
                raise ValueError(f"{where}: a {self.model} reads exactly one source")
            if self.strategy != "full" or self.fusion or self.source_model:
                raise ValueError(
                    f"{where}: fusion, source_model and strategies other than "
                    "'full' apply to EmoMucs only"
                )
            if self.per_source:
                raise ValueError(f"{where}: per_source applies to EmoMucs only")
        else:
            raise ValueError(
                f"{where}: unknown model {self.model!r}; expected EmoMucs or one of "
                f"{SINGLE_SOURCE_MODELS}"
            )
        self._check_representation(where)

    def _check_representation(self, where: str) -> None:
        networks = {self.network_of(s) for s in self.sources}
        for network in sorted(networks):
            if self.input_representation not in READS[network]:
                raise ValueError(
                    f"{where}: {network} reads {list(READS[network])}, not "
                    f"{self.input_representation!r} (every source network reads "
                    "one input tensor, so all must read the same representation)"
                )

    def _check_per_source(self, where: str) -> None:
        for source, entry in self.per_source.items():
            if source not in self.sources:
                raise ValueError(
                    f"{where}: per_source names {source!r}, not one of its sources "
                    f"{list(self.sources)}"
                )
            unknown = sorted(set(entry) - set(PER_SOURCE_KEYS))
            if unknown:
                raise ValueError(
                    f"{where}: per_source.{source} has unknown keys {unknown}; "
                    f"expected some of {list(PER_SOURCE_KEYS)}"
                )
            model = entry.get("source_model", self.source_model)
            if model not in SINGLE_SOURCE_MODELS:
                raise ValueError(
                    f"{where}: per_source.{source}.source_model must be one of "
                    f"{SINGLE_SOURCE_MODELS}, got {model!r}"
                )

    @property
    def network(self) -> str:
        """The single-source network: the model itself, or EmoMucs' source model."""
        return self.source_model if self.model == "EmoMucs" else self.model

    @property
    def input_representation(self) -> str:
        """The feature representation the variant reads (its own or the
        network's default)."""
        return self.representation or READS[self.network][0]

    def network_of(self, source: str) -> str:
        """The network that reads ``source`` (``per_source`` or the variant's)."""
        return self.per_source.get(source, {}).get("source_model", self.network)

    def kwargs_of(self, source: str, shape_kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments of ``source``'s network (see ``per_source``)."""
        own = dict(self.per_source.get(source, {}).get("model_kwargs") or {})
        network = self.network_of(source)
        if network != self.network:
            shared = self.per_source_network_kwargs.get(network, {})
            return {**shared, **own, **shape_kwargs}
        return {**self.network_kwargs, **self.model_kwargs, **own, **shape_kwargs}

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
        if self.per_source:
            own = []
            for source, entry in self.per_source.items():
                kwargs = ", ".join(
                    f"{k}={v}"
                    for k, v in sorted((entry.get("model_kwargs") or {}).items())
                )
                network = entry.get("source_model", self.source_model)
                own.append(f"{source}: {network}" + (f" {kwargs}" if kwargs else ""))
            label += f" [{'; '.join(own)}]"
        if self.representation and self.representation != READS[self.network][0]:
            label += f" {{{self.representation}}}"
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
        own = {}
        for source in self.sources:
            network = self.network_of(source)
            source_kwargs = self.kwargs_of(source, shape_kwargs)
            if network != self.source_model or source_kwargs != kwargs:
                own[source] = {"model": network, "kwargs": source_kwargs}
        return build_model(
            "EmoMucs",
            source_model=self.source_model,
            source_kwargs=kwargs,
            sources=list(self.sources),
            fusion=self.fusion,
            dropout=self.fusion_dropout,
            units_per_source=self.units_per_source,
            **({"source_networks": own} if own else {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples), for artifacts and cache keys.

        The fields added for source-specific networks and other representations
        are left out at their defaults, so the variants that existed before them
        keep their cache keys and fingerprints.
        """
        values = asdict(self)
        values["sources"] = list(self.sources)
        for name in OMITTED_AT_DEFAULT:
            if not values[name]:
                del values[name]
        return values


DERIVED = ("network_kwargs", "per_source_network_kwargs")
"""Fields filled from the ``networks`` parameters, not set by a variant."""
OMITTED_AT_DEFAULT = ("per_source", "per_source_network_kwargs", "representation")
