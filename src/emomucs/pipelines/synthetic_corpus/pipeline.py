"""Synthetic corpus: designs → PMEmo tables, ceiling, source contributions, stems →
choruses, multitrack set."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    build_metadata,
    build_static_annotations,
    design_tracks,
    estimate_ceiling,
    estimate_contributions,
    mix_stems,
    render_multitrack,
    render_stems,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                design_tracks,
                "params:synthetic_corpus",
                "synthetic_ground_truth",
                name="design_tracks",
            ),
            Node(
                build_metadata,
                ["synthetic_ground_truth", "params:synthetic_corpus"],
                "synthetic_metadata",
                name="build_metadata",
            ),
            Node(
                build_static_annotations,
                "synthetic_ground_truth",
                "synthetic_static_annotations",
                name="build_static_annotations",
            ),
            Node(
                estimate_ceiling,
                ["synthetic_ground_truth", "params:synthetic_corpus"],
                "synthetic_ceiling",
                name="estimate_ceiling",
            ),
            Node(
                estimate_contributions,
                "synthetic_ground_truth",
                "synthetic_contributions",
                name="estimate_contributions",
            ),
            Node(
                render_stems,
                ["synthetic_ground_truth", "params:synthetic_corpus"],
                "synthetic_stems",
                name="render_stems",
            ),
            Node(
                mix_stems,
                ["synthetic_ground_truth", "synthetic_stems"],
                "synthetic_choruses",
                name="mix_stems",
            ),
            Node(
                render_multitrack,
                "params:synthetic_corpus",
                "synthetic_multitrack",
                name="render_multitrack",
            ),
        ]
    )
