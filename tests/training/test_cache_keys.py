"""The split cache is keyed by the code it runs, and says why it retrains."""

import json
import logging

import pytest

from emomucs.training import (
    CVOptions,
    ExperimentSpec,
    TrainOptions,
    assign_folds,
    nested_cv,
    run_nested_cv,
)
from emomucs.training import cache as split_cache

QUICK = CVOptions(TrainOptions(max_epochs=1, patience=1, progress=False), seed=0)


@pytest.fixture
def counted(monkeypatch):
    """Labels of the splits trained from now on."""
    calls = []
    real = nested_cv.train_model

    def counting(*args, **kwargs):
        calls.append(kwargs["label"])
        return real(*args, **kwargs)

    monkeypatch.setattr(nested_cv, "train_model", counting)
    return calls


def test_changed_code_retrains_and_says_why(
    small_corpus, tmp_path, counted, monkeypatch, caplog
):
    table, features = small_corpus
    folds = assign_folds(table["musicId"], outer_folds=3, inner_folds=2, seed=0)
    options = CVOptions(QUICK.train, cache_dir=str(tmp_path))
    spec = ExperimentSpec.from_params({"model": "C1D", "sources": ["bass"]})

    run_nested_cv(spec, features, table, folds, options)
    assert len(counted) == 6
    assert len(list(tmp_path.rglob("*.json"))) == 6  # each entry's key parts

    with caplog.at_level(logging.INFO, logger="emomucs.training.cache"):
        run_nested_cv(spec, features, table, folds, options)
    assert len(counted) == 6  # same key: every split reused
    assert "retraining" not in caplog.text

    monkeypatch.setattr(split_cache, "source_fingerprint", lambda parts: "edited-code")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="emomucs.training.cache"):
        run_nested_cv(spec, features, table, folds, options)
    assert len(counted) == 12  # a fixed bug in models/ or training/ retrains
    retrained = [r.getMessage() for r in caplog.records if "retraining" in r.message]
    assert len(retrained) == 1, retrained  # once per reason, not per split
    assert (
        retrained[0].startswith("C1D (bass): retraining") and "code (" in retrained[0]
    )
    assert "-> edited-code" in retrained[0]
    assert "torch" not in retrained[0] and "settings" not in retrained[0]


def test_the_key_holds_the_built_model_and_the_device(
    small_corpus, tmp_path, counted, caplog
):
    table, features = small_corpus
    folds = assign_folds(table["musicId"], outer_folds=3, inner_folds=2, seed=0)
    options = CVOptions(QUICK.train, cache_dir=str(tmp_path))
    run_nested_cv(
        ExperimentSpec.from_params({"model": "C1D", "sources": ["bass"]}),
        features,
        table,
        folds,
        options,
    )
    parts = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert parts["model"]["model"] == "C1D" and parts["model"]["kwargs"]
    assert parts["device"] == "cpu" and parts["torch"] and parts["code"]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="emomucs.training.cache"):
        run_nested_cv(
            ExperimentSpec.from_params(
                {"model": "C1D", "sources": ["bass"]},
                networks={"C1D": {"hidden_units": 8}},
            ),
            features,
            table,
            folds,
            options,
        )
    assert len(counted) == 12
    # the changed argument is named, in the built model and in the variant's settings
    assert "model.kwargs.hidden_units (64 -> 8)" in caplog.text
    assert "experiment.network_kwargs.hidden_units (null -> 8)" in caplog.text


def test_the_heap_setting_is_not_part_of_the_key(small_corpus, tmp_path, counted):
    table, features = small_corpus
    folds = assign_folds(table["musicId"], outer_folds=3, inner_folds=2, seed=0)
    spec = ExperimentSpec.from_params({"model": "C1D", "sources": ["bass"]})
    fixed = CVOptions(QUICK.train, cache_dir=str(tmp_path), heap_mmap_threshold_mb=8)
    first = run_nested_cv(spec, features, table, folds, fixed)
    assert len(counted) == 6
    adaptive = CVOptions(QUICK.train, cache_dir=str(tmp_path))
    again = run_nested_cv(spec, features, table, folds, adaptive)
    assert len(counted) == 6  # every split reused: the numbers do not depend on it
    assert again.predictions.equals(first.predictions)
