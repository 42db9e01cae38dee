"""TorchDataset: the versioned file format of feature sets and checkpoints."""

import numpy as np
import pytest
import torch
from kedro.io.core import DatasetError, Version

from emomucs.datasets.torch_dataset import TorchDataset
from emomucs.models import build_model, from_checkpoint, to_checkpoint


def test_checkpoints_round_trip_per_version(tmp_path):
    path = str(tmp_path / "models" / "cv_models.pt")
    model = build_model("C1D", n_mels=8, n_frames=64)
    artifact = {"selected": {0: 1}, "models": {0: {1: to_checkpoint(model)}}}
    TorchDataset(path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(artifact)
    later = {"selected": {0: 0}, "models": {}}
    TorchDataset(path, version=Version(None, "2026-01-02T00.00.00.000Z")).save(later)

    latest = TorchDataset(path, version=Version(None, None)).load()
    assert latest["selected"] == {0: 0}
    first = TorchDataset(path, version=Version("2026-01-01T00.00.00.000Z", None)).load()
    rebuilt = from_checkpoint(first["models"][0][1])
    x = torch.randn(2, 8, 64)
    assert torch.equal(rebuilt(x), model.eval()(x))


def test_refuses_what_would_not_load_without_running_code(tmp_path):
    dataset = TorchDataset(str(tmp_path / "x.pt"))
    with pytest.raises(DatasetError, match=r"data\['values'\] is a ndarray"):
        dataset.save({"values": np.zeros(3)})
    assert not dataset.exists()
