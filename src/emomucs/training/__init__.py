"""Training and evaluation: folds, tensors, the training loop, metrics, nested CV.

Plain library code (no Kedro): the experiments pipeline wraps it in nodes.
"""

from emomucs.training.data import FeatureSet, Standardiser, validate_features
from emomucs.training.folds import assign_folds, iter_splits, validate_folds
from emomucs.training.loop import (
    NonFiniteLossError,
    TrainOptions,
    TrainResult,
    predict,
    train_model,
)
from emomucs.training.metrics import (
    attention_column,
    r2,
    rmse,
    score,
    summarise_folds,
)
from emomucs.training.nested_cv import (
    CVOptions,
    CVResult,
    SelectedModel,
    run_nested_cv,
    selected_models,
)
from emomucs.training.spec import ExperimentSpec

__all__ = [
    "CVOptions",
    "CVResult",
    "ExperimentSpec",
    "FeatureSet",
    "NonFiniteLossError",
    "SelectedModel",
    "Standardiser",
    "TrainOptions",
    "TrainResult",
    "assign_folds",
    "attention_column",
    "iter_splits",
    "predict",
    "r2",
    "rmse",
    "run_nested_cv",
    "score",
    "selected_models",
    "summarise_folds",
    "train_model",
    "validate_features",
    "validate_folds",
]
