"""DemucsRepoDataset: one model per name, written as Demucs names it."""

from __future__ import annotations

import pytest
from kedro.io import DatasetError

from emomucs.datasets.demucs_repo_dataset import DemucsRepoDataset
from emomucs.separation import package_model

from .tiny import tiny_htdemucs


def test_saving_again_replaces_the_previous_file(tmp_path):
    dataset = DemucsRepoDataset(str(tmp_path), "compact")
    assert not dataset.exists()
    dataset.save(package_model(tiny_htdemucs(seed=1), {"run": 1}))
    dataset.save(package_model(tiny_htdemucs(seed=2), {"run": 2}))
    files = sorted(path.name for path in tmp_path.iterdir())
    assert (
        len(files) == 1 and files[0].startswith("compact-") and files[0].endswith(".th")
    )
    assert dataset.exists() and dataset.load()["training_args"] == {"run": 2}


def test_other_models_in_the_repo_are_left_alone(tmp_path):
    DemucsRepoDataset(str(tmp_path), "keep").save(package_model(tiny_htdemucs(), {}))
    DemucsRepoDataset(str(tmp_path), "compact").save(package_model(tiny_htdemucs(), {}))
    assert len(list(tmp_path.glob("keep-*.th"))) == 1


def test_names_and_packages_are_checked(tmp_path):
    with pytest.raises(DatasetError, match="use letters"):
        DemucsRepoDataset(str(tmp_path), "my-model")
    dataset = DemucsRepoDataset(str(tmp_path), "compact")
    with pytest.raises(DatasetError, match="needs the keys"):
        dataset.save({"state": {}})
    with pytest.raises(DatasetError, match="found none"):
        dataset.load()
