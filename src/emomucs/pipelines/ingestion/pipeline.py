"""Ingestion: PMEmo layout → labelled, validated candidate tracks."""

from kedro.pipeline import Node, Pipeline

from .nodes import attach_labels, combine_rejections, locate_audio, validate_metadata


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                validate_metadata,
                ["pmemo_metadata", "params:ingestion"],
                ["valid_metadata", "metadata_rejections"],
                name="validate_metadata",
            ),
            Node(
                attach_labels,
                [
                    "valid_metadata",
                    "pmemo_static_annotations",
                    "pmemo_metadata",
                    "params:ingestion",
                ],
                ["labelled_tracks", "label_rejections"],
                name="attach_labels",
            ),
            Node(
                locate_audio,
                ["labelled_tracks", "pmemo_choruses", "params:ingestion"],
                ["candidate_tracks", "audio_rejections"],
                name="locate_audio",
            ),
            Node(
                combine_rejections,
                ["metadata_rejections", "label_rejections", "audio_rejections"],
                "ingestion_rejections",
                name="combine_ingestion_rejections",
            ),
        ]
    )
