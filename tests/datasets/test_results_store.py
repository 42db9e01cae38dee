"""The results store loads as empty before any variant has run."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from emomucs.datasets import ResultsStoreDataset
from emomucs.pipelines.reporting.pipeline import create_pipeline

CATALOG = Path(__file__).parents[2] / "conf" / "base" / "catalog" / "reporting.yml"


def _store(path: Path) -> dict:
    """The project's ``cv_summaries`` entry, pointed at ``path``."""
    config = yaml.safe_load(CATALOG.read_text())["cv_summaries"]
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
    catalog = DataCatalog.from_config({"cv_summaries": _store(tmp_path / "none")})
    pipe: Pipeline = create_pipeline()
    outputs = SequentialRunner().run(pipe, catalog)
    assert "No variant has run yet." in outputs["results_markdown"].load()
    assert outputs["results_table"].load().empty
