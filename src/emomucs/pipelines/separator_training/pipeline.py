"""Wires separator training: split by song, train, and score on held-out songs."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import evaluate_separator, split_multitrack, train_separator


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                split_multitrack,
                inputs=["separator_training_stems", "params:separator_training"],
                outputs="separator_split",
                name="split_multitrack",
            ),
            node(
                train_separator,
                inputs=[
                    "separator_training_stems",
                    "separator_split",
                    "params:separator_training",
                ],
                outputs=["separator_model", "separator_training_history"],
                name="train_separator",
            ),
            node(
                evaluate_separator,
                inputs=[
                    "separator_model",
                    "separator_training_stems",
                    "separator_split",
                    "params:separator_training",
                ],
                outputs="separator_sdr",
                name="evaluate_separator",
            ),
        ]
    )
