"""Plots: one small pipeline per stage it draws, so each registered pipeline adds
the figures of what it ran.

Per-variant figures live in the variant's namespace (``<group>.<name>``), beside
that variant's training nodes, so kedro-viz folds them into the same group.
"""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline, pipeline

from .nodes import (
    plot_attention_weights,
    plot_contributions_overview,
    plot_emotion_plane,
    plot_predictions,
    plot_results_heatmap,
    plot_separation_sdr,
    plot_source_contributions,
    plot_source_learning_curves,
)

SOURCE_GROUP = "sources"
"""Namespace group of the single-source variants (``sources.<network>_<stem>``)."""

ATTENTION_GROUP = "emomucs_attention"
"""Namespace group of the attention-fusion variants, whose predictions carry
attention weights."""


def variant_plots_template() -> Pipeline:
    """The figures every variant gets; inputs are that variant's outputs."""
    return Pipeline(
        [
            Node(
                plot_predictions,
                ["cv_predictions", "cv_summary", "params:plots"],
                "prediction_scatter",
                name="plot_predictions",
            )
        ]
    )


def attention_plots_template() -> Pipeline:
    """The extra figure of an attention-fusion variant: its mean weights."""
    return Pipeline(
        [
            Node(
                plot_attention_weights,
                ["cv_predictions", "cv_summary", "params:plots"],
                "attention_weights_plot",
                name="plot_attention_weights",
            )
        ]
    )


def contribution_plots_template() -> Pipeline:
    """The contribution figure of a multi-source variant, from its table."""
    return Pipeline(
        [
            Node(
                plot_source_contributions,
                ["contributions", "params:plots"],
                "contributions_plot",
                name="plot_source_contributions",
            )
        ]
    )


def create_variant_plots_pipeline(
    variants: Iterable[str], contributions: Iterable[str] = ()
) -> Pipeline:
    """Predicted-vs-true scatter of each variant, in its namespace; attention
    variants also get their mean weights per source and dimension, and the
    variants in ``contributions`` the figure of their sources' contributions."""
    variants, contributions = set(variants), set(contributions)
    pipes = []
    for v in sorted(variants | contributions):
        template = Pipeline([])
        if v in variants:
            template += variant_plots_template()
            if v.split(".")[0] == ATTENTION_GROUP:
                template += attention_plots_template()
        if v in contributions:
            template += contribution_plots_template()
        pipes.append(pipeline(template, namespace=v, parameters={"params:plots"}))
    return Pipeline(pipes)


def create_contributions_overview_pipeline(
    contributions: Iterable[str] = (),
) -> Pipeline:
    """One panel per multi-source variant with stored contributions.

    Args:
        contributions: Variants whose contributions this run computes; their
            summaries become inputs, so the figure is drawn after them.
    """
    fresh = [f"{v}.contribution_summary" for v in sorted(set(contributions))]
    return Pipeline(
        [
            Node(
                plot_contributions_overview,
                ["contribution_summaries", "params:plots", *fresh],
                "contributions_overview",
                name="plot_contributions_overview",
            )
        ]
    )


def create_results_plots_pipeline(variants: Iterable[str] = ()) -> Pipeline:
    """The results heat-map and, when single-source variants ran, their learning
    curves.

    Args:
        variants: Namespaces run in the same ``kedro run``; those of the
            ``sources`` group feed the learning-curve grid.
    """
    nodes = [
        Node(
            plot_results_heatmap,
            ["results_table", "params:plots"],
            "results_heatmap",
            name="plot_results_heatmap",
        )
    ]
    singles = sorted(v for v in set(variants) if v.split(".")[0] == SOURCE_GROUP)
    if singles:
        logs = {v.split(".", 1)[1]: f"{v}.training_log" for v in singles}
        nodes.append(
            Node(
                plot_source_learning_curves,
                {"options": "params:plots", **logs},
                "source_learning_curves",
                name="plot_source_learning_curves",
            )
        )
    return Pipeline(nodes)


def create_experiment_plots_pipeline(
    variants: Iterable[str], contributions: Iterable[str] = ()
) -> Pipeline:
    """Every figure of an experiment run: per variant, heat-map, learning curves,
    and the contributions of the multi-source variants."""
    variants, contributions = list(variants), list(contributions)
    pipe = create_variant_plots_pipeline(variants, contributions)
    pipe += create_results_plots_pipeline(variants)
    if contributions:
        pipe += create_contributions_overview_pipeline(contributions)
    return pipe


def create_corpus_plots_pipeline() -> Pipeline:
    """``track_table`` in the valence–arousal plane."""
    return Pipeline(
        [
            Node(
                plot_emotion_plane,
                ["track_table", "params:plots"],
                "emotion_plane",
                name="plot_emotion_plane",
            )
        ]
    )


def create_separation_plots_pipeline() -> Pipeline:
    """SDR per source of the separator on the corpus clips (``separation_sdr``)."""
    return Pipeline(
        [
            Node(
                plot_separation_sdr,
                ["separation_sdr", "params:plots"],
                "separation_sdr_plot",
                name="plot_separation_sdr",
            )
        ]
    )


def create_separator_training_plots_pipeline() -> Pipeline:
    """SDR per source of the trained separator on held-out songs (``separator_sdr``)."""
    return Pipeline(
        [
            Node(
                plot_separation_sdr,
                ["separator_sdr", "params:plots"],
                "separator_sdr_plot",
                name="plot_separator_sdr",
            )
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """Figures from stored artifacts: the corpus plane, the latest results table and
    the contributions of every multi-source variant.

    ``kedro run --pipeline=plots`` redraws them without training anything; the
    per-variant figures come with the experiment pipelines.
    """
    return (
        create_corpus_plots_pipeline()
        + create_results_plots_pipeline()
        + create_contributions_overview_pipeline()
    )
