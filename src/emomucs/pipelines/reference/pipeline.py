"""Reference: log-mel of the mix and the stems → band statistics → ridge on the
shared folds → scores and a summary beside the corpus' ceiling."""

from kedro.pipeline import Node, Pipeline

from emomucs.pipelines.experiments.pipeline import create_folds_pipeline
from emomucs.pipelines.features import create_pipeline as create_features_pipeline

from .nodes import score_reference, summarise_bands, summarise_reference


def create_pipeline(**kwargs) -> Pipeline:
    """The reference with the folds and the log-mel features it reads."""
    return (
        create_folds_pipeline()
        + create_features_pipeline().only_nodes_with_outputs(
            "mix_log_mel", "stems_log_mel"
        )
        + Pipeline(
            [
                Node(
                    summarise_bands,
                    ["mix_log_mel", "track_table", "params:reference"],
                    "reference_mix_bands",
                    name="summarise_mix_bands",
                ),
                Node(
                    summarise_bands,
                    ["stems_log_mel", "track_table", "params:reference"],
                    "reference_stems_bands",
                    name="summarise_stems_bands",
                ),
                Node(
                    score_reference,
                    [
                        "reference_mix_bands",
                        "reference_stems_bands",
                        "track_table",
                        "cv_folds",
                        "params:reference",
                    ],
                    ["reference_scores", "reference_predictions"],
                    name="score_reference",
                ),
                Node(
                    summarise_reference,
                    [
                        "reference_scores",
                        "reference_stems_bands",
                        "corpus_ceiling",
                        "track_table",
                        "cv_folds",
                        "params:reference",
                    ],
                    "reference_summary",
                    name="summarise_reference",
                ),
            ]
        )
    )
