"""Clipping: candidate tracks + chorus audio → fixed-length clips and the final track table."""

from kedro.pipeline import Node, Pipeline

from .nodes import clip_choruses, finalise_tracks


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                clip_choruses,
                ["candidate_tracks", "pmemo_choruses", "params:clipping"],
                ["clips", "clip_table", "clip_rejections"],
                name="clip_choruses",
            ),
            Node(
                finalise_tracks,
                [
                    "candidate_tracks",
                    "clip_table",
                    "ingestion_rejections",
                    "clip_rejections",
                    "pmemo_metadata",
                    "params:clipping",
                ],
                ["track_table", "rejected_tracks"],
                name="finalise_tracks",
            ),
        ]
    )
