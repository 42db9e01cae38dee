"""Synthetic corpus: designs → PMEmo tables, ceiling, source contributions, true
stems and choruses, multitrack set."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    build_metadata,
    build_static_annotations,
    design_tracks,
    estimate_ceiling,
    estimate_contributions,
    render_multitrack,
    render_tracks,
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
                render_tracks,
                ["synthetic_ground_truth", "params:synthetic_corpus"],
                "synthetic_audio",
                name="render_tracks",
            ),
            Node(
                render_multitrack,
                "params:synthetic_corpus",
                "synthetic_multitrack",
                name="render_multitrack",
            ),
        ]
    )
