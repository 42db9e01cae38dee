"""The results store loads as empty before any variant has run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kedro.io import DataCatalog, DatasetError
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from emomucs.datasets import ResultsStoreDataset, SummaryDataset
from emomucs.pipelines.reporting.pipeline import create_pipeline

CATALOG = Path(__file__).parents[2] / "conf" / "base" / "catalog" / "reporting.yml"
EXPERIMENTS = CATALOG.with_name("experiments.yml")
REFERENCE = CATALOG.with_name("reference.yml")


def _store(path: Path, name: str = "cv_summaries") -> dict:
    """The project's ``name`` entry (a results store), pointed at ``path``."""
    config = yaml.safe_load(CATALOG.read_text())[name]
    return {**config, "path": str(path)}


def test_store_is_empty_when_its_folder_is_missing_or_empty(tmp_path):
    catalog = DataCatalog.from_config({"cv_summaries": _store(tmp_path / "absent")})
    assert isinstance(catalog.get("cv_summaries"), ResultsStoreDataset)
    assert catalog.load("cv_summaries") == {}
    (tmp_path / "empty").mkdir()
    catalog = DataCatalog.from_config({"cv_summaries": _store(tmp_path / "empty")})
    assert catalog.load("cv_summaries") == {}


def test_store_loads_the_summaries_it_holds(tmp_path):
    (tmp_path / "baselines.c1d.json").write_text(json.dumps({"label": "C1D-M"}))
    catalog = DataCatalog.from_config({"cv_summaries": _store(tmp_path)})
    loaded = catalog.load("cv_summaries")
    assert list(loaded) == ["baselines.c1d"]
    assert loaded["baselines.c1d"]() == {"label": "C1D-M"}


def test_reporting_runs_before_any_variant_has(tmp_path):
    truth = yaml.safe_load(REFERENCE.read_text())["corpus_contributions"]
    catalog = DataCatalog.from_config(
        {
            "cv_summaries": _store(tmp_path / "none"),
            "contribution_summaries": _store(tmp_path / "no", "contribution_summaries"),
            "reference_summaries": {
                **yaml.safe_load(REFERENCE.read_text())["reference_summaries"],
                "path": str(tmp_path / "no_reference"),
            },
            # real data: no contributions.json at the dataset root
            "corpus_contributions": {**truth, "filepath": str(tmp_path / "c.json")},
        }
    )
    pipe: Pipeline = create_pipeline()
    outputs = SequentialRunner().run(pipe, catalog)
    assert "No variant has run yet." in outputs["results_markdown"].load()
    assert outputs["results_table"].load().empty
    assert outputs["results_differences"].load().empty


def _summary(key: str, value: float) -> dict:
    return {"label": "C1D-M", "key": key, "metrics": {"pooled": {"r2_valence": value}}}


def test_a_variants_summaries_are_kept_per_key_and_the_newest_loads(tmp_path):
    """The catalog's ``{variant}.cv_summary``: one file per audio and corpus."""
    config = yaml.safe_load(EXPERIMENTS.read_text())["{variant}.cv_summary"]
    folder = str(tmp_path / "cv_summaries" / "emomucs_late.c1d_freeze")
    catalog = DataCatalog.from_config({"v.cv_summary": {**config, "folder": folder}})
    dataset = catalog.get("v.cv_summary")
    assert isinstance(dataset, SummaryDataset)
    assert not dataset.exists()
    catalog.save("v.cv_summary", _summary("local:compact:ab12__c0ffee", 0.1))
    catalog.save("v.cv_summary", _summary("oracle__c0ffee", 0.2))
    assert catalog.load("v.cv_summary")["key"] == "oracle__c0ffee"
    catalog.save("v.cv_summary", _summary("local:compact:ab12__c0ffee", 0.3))
    assert catalog.load("v.cv_summary")["metrics"]["pooled"]["r2_valence"] == 0.3
    store = DataCatalog.from_config({"s": _store(tmp_path / "cv_summaries")})
    assert sorted(store.load("s")) == [
        "emomucs_late.c1d_freeze/local-compact-ab12__c0ffee",
        "emomucs_late.c1d_freeze/oracle__c0ffee",
    ]
    with pytest.raises(DatasetError, match="without 'key'"):
        dataset.save({"label": "C1D-M"})
