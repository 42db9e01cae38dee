"""Experiments: one template pipeline, instantiated per variant with a namespace.

Each variant ``<group>.<name>`` (e.g. ``emomucs_late.c1d_freeze``) reads its
settings from the parameters ``<group>.<name>.experiment`` (plus the shared
``networks`` and ``training``) and writes
``<group>.<name>.cv_models``, ``.cv_predictions``, ``.training_log``,
``.cv_metrics`` and ``.cv_summary``, and a multi-source (EmoMucs) variant also
``.contributions`` and ``.contribution_summary`` (catalog factories serve all of
them). Every
pipeline below includes what it needs upstream from ``track_table``, ``mix`` and
``stems`` on: the shared folds, the feature sets it reads and, for finetune/freeze,
the single-source models it starts from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kedro.pipeline import Node, Pipeline, pipeline

from emomucs.pipelines.features import create_pipeline as create_features_pipeline
from emomucs.pipelines.separation import (
    OTHER_SEPARATORS,
    create_other_separator_pipeline,
)

from .nodes import (
    assign_cv_folds,
    compute_source_contributions,
    evaluate_predictions,
    train_nested_cv,
)
from .variants import (
    DEFAULT_COMBINATIONS,
    FUSIONS,
    Variant,
    baseline_variants,
    combination_variants,
    emomucs_variants,
    harmonic_variants,
    hpss_variants,
    source_specific_variants,
    source_variant,
    source_variants,
    twins,
)

SHARED_INPUTS = ("track_table", "cv_folds")


def create_folds_pipeline() -> Pipeline:
    """``track_table`` → ``cv_folds``, computed once for every model."""
    return Pipeline(
        [
            Node(
                assign_cv_folds,
                ["track_table", "params:cv"],
                "cv_folds",
                name="assign_cv_folds",
            )
        ]
    )


def experiment_template(n_pretrained: int = 0, contributions: bool = False) -> Pipeline:
    """The template every variant instantiates.

    Args:
        n_pretrained: Inputs ``pretrained_0`` … for the single-source models a
            finetune/freeze variant starts from; 0 for the others.
        contributions: Add the per-source contribution stage (variants with
            several sources; a single-source model or a mix baseline has no
            source to take away).
    """
    pretrained = [f"pretrained_{i}" for i in range(n_pretrained)]
    nodes = [
        Node(
            train_nested_cv,
            [
                "features",
                "track_table",
                "cv_folds",
                "params:experiment",
                "params:networks",
                "params:training",
                *pretrained,
            ],
            ["cv_models", "cv_predictions", "training_log"],
            name="train_nested_cv",
        ),
        Node(
            evaluate_predictions,
            [
                "cv_predictions",
                "cv_folds",
                "cv_models",
                "track_table",
                "params:experiment",
                "params:networks",
            ],
            ["cv_metrics", "cv_summary"],
            name="evaluate_predictions",
        ),
    ]
    if contributions:
        nodes.append(
            Node(
                compute_source_contributions,
                [
                    "features",
                    "track_table",
                    "cv_folds",
                    "cv_models",
                    "cv_predictions",
                    "params:training",
                    "params:contributions",
                    "corpus_contributions",
                ],
                ["contributions", "contribution_summary"],
                name="compute_source_contributions",
            )
        )
    return Pipeline(nodes)


def instantiate(variant: Variant) -> Pipeline:
    """The template in ``variant``'s namespace, wired to its inputs."""
    inputs = {name: name for name in SHARED_INPUTS}
    inputs["features"] = variant.features
    inputs.update({f"pretrained_{i}": n for i, n in enumerate(variant.pretrained)})
    contributions = len(variant.sources) > 1
    parameters = {"params:training", "params:networks"}
    if contributions:
        parameters.add("params:contributions")
        inputs["corpus_contributions"] = "corpus_contributions"
    return pipeline(
        experiment_template(len(variant.pretrained), contributions),
        namespace=variant.namespace,
        inputs=inputs,
        parameters=parameters,
    )


def with_upstream(variants: Iterable[Variant]) -> Pipeline:
    """The variants, the single-source models they start from, their feature sets
    and the folds."""
    wanted: dict[str, Variant] = {}
    for variant in variants:
        for source in variant.sources if variant.pretrained else ():
            upstream = source_variant(variant.slug, source)
            wanted.setdefault(upstream.namespace, upstream)
        wanted.setdefault(variant.namespace, variant)
    features = {variant.features for variant in wanted.values()}
    # other separators' stems and features come with the sets that read them
    feature_stages = sum(
        (create_other_separator_pipeline(n) for n in OTHER_SEPARATORS),
        create_features_pipeline(),
    )
    return (
        create_folds_pipeline()
        + feature_stages.to_outputs(*sorted(features))
        + Pipeline([instantiate(v) for v in wanted.values()])
    )


def create_emomucs_pipeline(fusion: str) -> Pipeline:
    """EmoMucs with one fusion: C1D and C2D × full/finetune/freeze."""
    return with_upstream(emomucs_variants(fusion))


def create_baselines_pipeline() -> Pipeline:
    """C1D-M, C2D-M and WaveC1D-M on the mix."""
    return with_upstream(baseline_variants())


def create_sources_pipeline(
    slugs: Sequence[str] = ("c1d", "c2d", "c2d_hidden"),
) -> Pipeline:
    """Single-source models of each stem (finetune/freeze start from them)."""
    return with_upstream(source_variants(slugs))


def create_combinations_pipeline(
    subsets: Sequence[Sequence[str]] = DEFAULT_COMBINATIONS,
) -> Pipeline:
    """EmoMucs (late, freeze) on subsets of the stems, e.g. vocals + drums."""
    return with_upstream(combination_variants(subsets))


def create_pipelines() -> dict[str, Pipeline]:
    """Every experiment pipeline by its registry name.

    ``source_specific``, ``emomucs_hpss`` and ``harmonic`` (beyond the paper) each
    run their variants beside their twins (:func:`~.variants.twins`: C1D-M and
    EmoMucs-C1D late full on log-mel of the main separator's stems), so one run
    compares them on the same folds.
    """
    pipelines = {f"emomucs_{f}": create_emomucs_pipeline(f) for f in FUSIONS}
    pipelines["baselines"] = create_baselines_pipeline()
    pipelines["sources"] = create_sources_pipeline()
    pipelines["combinations"] = create_combinations_pipeline()
    pipelines["source_specific"] = with_upstream(
        [*source_specific_variants(), *twins()]
    )
    pipelines["emomucs_hpss"] = with_upstream([*hpss_variants(), *twins()])
    pipelines["harmonic"] = with_upstream([*harmonic_variants(), *twins()])
    return pipelines


def create_pipeline(**kwargs) -> Pipeline:
    """All experiments together."""
    return sum(create_pipelines().values(), Pipeline([]))


def variant_namespaces(pipe: Pipeline) -> list[str]:
    """The variants a pipeline runs (namespaces that write a ``cv_summary``)."""
    suffix = ".cv_summary"
    return sorted(o[: -len(suffix)] for o in pipe.all_outputs() if o.endswith(suffix))


def contribution_namespaces(pipe: Pipeline) -> list[str]:
    """The variants whose per-source contributions a pipeline computes."""
    suffix = ".contribution_summary"
    return sorted(o[: -len(suffix)] for o in pipe.all_outputs() if o.endswith(suffix))
