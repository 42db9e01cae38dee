"""The experiment grid, declared once: which variants exist, what each one trains
and how its namespace is wired.

Kedro builds pipelines before it reads parameters, so the grid lives here, in code:
the pipelines are instantiated from it (``pipeline.py``) and each variant's
``<group>.<name>.experiment`` parameters are generated from it
(:func:`grid_parameters`, added to the parameters by
:class:`emomucs.config_loader.ConfigLoader`). ``conf/base/parameters/experiments.yml``
holds the settings users tune: the networks' shared arguments and, key by key, any
variant's own settings over the generated ones. A setting that would change the
wiring (model, sources, fusion, strategy) is refused when the run starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from emomucs import SOURCES
from emomucs.training.spec import FUSIONS, STRATEGIES

NETWORKS = {"c1d": "C1D", "c2d": "C2D", "c2d_hidden": "C2D", "wavec1d": "WaveC1D"}
"""Namespace slug -> single-source network. ``c2d_hidden`` is C2D with the hidden
layer mid fusion needs (this project's extension)."""

SLUG_KWARGS = {"c2d_hidden": {"hidden_layer": True}}
"""Namespace slug -> the network arguments it stands for (``model_kwargs``)."""

WIRED = ("model", "source_model", "sources", "fusion", "strategy", "representation")
"""Experiment settings that decide a variant's wiring (feature set, pretrained
inputs): fixed by the grid, not by parameters."""

REPRESENTATION = {"C1D": "log_mel", "C2D": "log_mel", "WaveC1D": "waveform"}

DEFAULT_COMBINATIONS: tuple[tuple[str, ...], ...] = (
    ("vocals", "drums"),
    ("vocals", "bass"),
    ("vocals", "other"),
    ("drums", "bass"),
    ("vocals", "drums", "bass"),
)
"""Source subsets the ``combinations`` pipeline fuses (late, freeze)."""


@dataclass(frozen=True)
class Variant:
    """One namespace of the experiment template.

    Attributes:
        namespace: ``<group>.<name>``, e.g. ``emomucs_late.c1d_freeze``.
        slug: Key of :data:`NETWORKS`: the single-source network.
        sources: ``("mix",)`` or stems, in the model's input order.
        strategy: ``full``, ``finetune`` or ``freeze``.
        fusion: EmoMucs fusion, None for single-input models.
        representation: The features it reads; None: its network's default.
        stems: The stems dataset it reads: ``stems`` (the main separator's) or
            another separator's, e.g. ``hpss.stems``.
    """

    namespace: str
    slug: str
    sources: tuple[str, ...]
    strategy: str = "full"
    fusion: str | None = None
    representation: str | None = None
    stems: str = "stems"

    @property
    def network(self) -> str:
        return NETWORKS[self.slug]

    @property
    def features(self) -> str:
        """The feature set this variant reads."""
        audio = "mix" if self.sources == ("mix",) else self.stems
        return f"{audio}_{self.representation or REPRESENTATION[self.network]}"

    @property
    def pretrained(self) -> list[str]:
        """The single-source ``cv_models`` a finetune/freeze variant starts from."""
        if self.strategy == "full":
            return []
        return [source_variant(self.slug, s).output("cv_models") for s in self.sources]

    @property
    def experiment(self) -> dict[str, Any]:
        """The variant's ``experiment`` parameters (ExperimentSpec's fields)."""
        if self.fusion is None:
            experiment: dict[str, Any] = {
                "model": self.network,
                "sources": list(self.sources),
            }
        else:
            experiment = {
                "model": "EmoMucs",
                "source_model": self.network,
                "sources": list(self.sources),
                "fusion": self.fusion,
                "strategy": self.strategy,
            }
        if self.slug in SLUG_KWARGS:
            experiment["model_kwargs"] = dict(SLUG_KWARGS[self.slug])
        if self.representation is not None:
            experiment["representation"] = self.representation
        return experiment

    def output(self, name: str) -> str:
        """A dataset of this variant, e.g. ``output("cv_summary")``."""
        return f"{self.namespace}.{name}"


def source_variant(slug: str, source: str) -> Variant:
    """The single-source model of one stem, e.g. ``sources.c1d_vocals``."""
    return Variant(f"sources.{slug}_{source}", slug, (source,))


def baseline_variants() -> list[Variant]:
    """C1D-M and C2D-M (the paper's baselines) and WaveC1D-M, on the mix."""
    return [
        Variant(f"baselines.{slug}", slug, ("mix",))
        for slug in ("c1d", "c2d", "wavec1d")
    ]


def source_variants(
    slugs: Sequence[str] = ("c1d", "c2d", "c2d_hidden"),
) -> list[Variant]:
    """Single-source models of every stem, for each network in ``slugs``."""
    return [source_variant(slug, source) for slug in slugs for source in SOURCES]


def emomucs_variants(fusion: str) -> list[Variant]:
    """EmoMucs with C1D and C2D sources × full/finetune/freeze.

    Mid fusion uses ``c2d_hidden``: the paper's C2D head has no hidden layer to cut.
    Attention fusion (the poster's future work) cuts C2D at its features instead,
    so it starts from the plain ``c2d`` single-source models.
    The waveform front end runs as a baseline only: four WaveC1D networks cost as
    much as four C2Ds per epoch, too much for the fast default.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; expected one of {FUSIONS}")
    c2d = "c2d_hidden" if fusion == "mid" else "c2d"
    return [
        Variant(f"emomucs_{fusion}.{slug}_{strategy}", slug, SOURCES, strategy, fusion)
        for slug in ("c1d", c2d)
        for strategy in STRATEGIES
    ]


def combination_variants(
    subsets: Sequence[Sequence[str]] = DEFAULT_COMBINATIONS,
    slugs: Sequence[str] = ("c1d", "c2d"),
    fusion: str = "late",
    strategy: str = "freeze",
) -> list[Variant]:
    """EmoMucs on subsets of the stems, e.g. ``combinations.c1d_vocals_drums``."""
    variants = []
    for subset in subsets:
        unknown = set(subset) - set(SOURCES)
        if unknown or len(subset) < 2:
            raise ValueError(
                f"combination {list(subset)}: needs two or more of {list(SOURCES)}"
            )
        for slug in slugs:
            name = f"combinations.{slug}_{'_'.join(subset)}"
            variants.append(Variant(name, slug, tuple(subset), strategy, fusion))
    return variants


HARMONIC_REPRESENTATIONS = ("chroma", "cqt")
"""The harmonic front ends beside log-mel (this project's extension)."""


def source_specific_variants() -> list[Variant]:
    """EmoMucs with a network per source: which network each source gets is a
    setting (``per_source`` in ``conf/base/parameters/experiments.yml``), not
    wiring, as long as the strategy is ``full``."""
    return [
        Variant("source_specific.late_full", "c1d", SOURCES, "full", "late"),
    ]


def hpss_variants() -> list[Variant]:
    """EmoMucs on the harmonic–percussive split (drums, harmonic)."""
    return [
        Variant(
            "emomucs_hpss.c1d_late_full",
            "c1d",
            ("drums", "harmonic"),
            "full",
            "late",
            stems="hpss.stems",
        ),
    ]


def harmonic_variants() -> list[Variant]:
    """C1D-M and EmoMucs-C1D late full on chroma and constant-Q."""
    return [
        variant
        for representation in HARMONIC_REPRESENTATIONS
        for variant in (
            Variant(
                f"harmonic.c1d_{representation}",
                "c1d",
                ("mix",),
                representation=representation,
            ),
            Variant(
                f"harmonic.c1d_{representation}_late_full",
                "c1d",
                SOURCES,
                "full",
                "late",
                representation=representation,
            ),
        )
    ]


def extension_variants() -> list[Variant]:
    """Beyond the paper: source-specific networks, the harmonic–percussive split
    and the harmonic front ends (each compared with its log-mel, Demucs-stems,
    uniform twin; :func:`twins`)."""
    return [*source_specific_variants(), *hpss_variants(), *harmonic_variants()]


def twins() -> list[Variant]:
    """What the extensions are compared with, on the same folds (:data:`TWINS`):
    C1D-M and EmoMucs-C1D late full, on log-mel of the main separator's stems."""
    wanted = set(TWINS.values())
    grid = [*baseline_variants(), *emomucs_variants("late")]
    return [v for v in grid if v.namespace in wanted]


def all_variants() -> list[Variant]:
    """The whole grid: every variant an experiment pipeline registers."""
    return [
        *baseline_variants(),
        *source_variants(),
        *(v for fusion in FUSIONS for v in emomucs_variants(fusion)),
        *combination_variants(),
        *extension_variants(),
    ]


def grid_parameters(variants: Sequence[Variant] | None = None) -> dict[str, Any]:
    """The grid as parameters, ``{group: {name: {"experiment": {...}}}}``."""
    parameters: dict[str, Any] = {}
    for variant in all_variants() if variants is None else variants:
        group, name = variant.namespace.split(".", 1)
        parameters.setdefault(group, {})[name] = {"experiment": variant.experiment}
    return parameters


TWINS = {
    "source_specific.late_full": "emomucs_late.c1d_full",
    "emomucs_hpss.c1d_late_full": "emomucs_late.c1d_full",
    **{
        f"harmonic.c1d_{representation}": "baselines.c1d"
        for representation in HARMONIC_REPRESENTATIONS
    },
    **{
        f"harmonic.c1d_{representation}_late_full": "emomucs_late.c1d_full"
        for representation in HARMONIC_REPRESENTATIONS
    },
}
"""Variant beyond the paper -> its twin: the same model with the paper's choice
where it departs (C1D for every stem, Demucs' stems, log-mel); the results table
gives their paired differences."""
