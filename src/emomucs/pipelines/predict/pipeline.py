"""Predict: the ``predict.paths`` files → one 20 s clip or sliding windows each →
the training separator's stems → the variant's features → its outer folds' models."""

from kedro.pipeline import Node, Pipeline

from .nodes import list_inputs, predict_emotions


def create_pipeline(**kwargs) -> Pipeline:
    """``predict_files`` (a table of paths) → ``predictions``."""
    return Pipeline(
        [
            Node(list_inputs, "params:predict", "predict_files", name="list_inputs"),
            Node(
                predict_emotions,
                [
                    "predict_files",
                    "predict_cv_models",
                    "params:predict",
                    "params:separation",
                    "params:clipping",
                ],
                "predictions",
                name="predict_emotions",
            ),
        ]
    )
