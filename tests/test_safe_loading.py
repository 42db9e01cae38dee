"""Loading runs no code from data files, and the catalog stays inside its roots.

Every file format the project reads back (feature sets and checkpoints, the training
and separation caches, audio sets) is loaded without pickle, so a planted file with a
pickled object is refused, not executed: each test first shows that the planted file
does run code when unpickled, then that our loader refuses it. Local Demucs repos are
the one exception (Demucs pickles the model class) and are documented as trusted input.
"""

from __future__ import annotations

import ast
import pathlib
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, DatasetError

from emomucs.datasets import AudioSetDataset, DemucsRepoDataset, TorchDataset
from emomucs.separation import StemsCache
from emomucs.separation import separators as separators_module
from emomucs.training.cache import SplitCache

PROJECT = Path(__file__).resolve().parents[1]
SRC = PROJECT / "src" / "emomucs"


class Payload:
    """Unpickling this creates ``marker``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _plant_torch(path: Path, marker: Path) -> None:
    """A torch file with tensors and a pickled object; proven to run code."""
    torch.save({"values": torch.zeros(3), "extra": Payload(marker)}, path)
    torch.load(path, weights_only=False)  # the unsafe way runs the payload ...
    assert marker.exists()
    marker.unlink()  # ... so its absence below means ours did not


def _plant_numpy(path: Path, marker: Path) -> None:
    """An .npy object array holding a pickled object; proven to run code."""
    payload = np.empty(1, dtype=object)
    payload[0] = Payload(marker)
    with path.open("wb") as stream:
        np.save(stream, payload, allow_pickle=True)
    np.load(path, allow_pickle=True)
    assert marker.exists()
    marker.unlink()


def test_torch_dataset_refuses_a_pickled_object(tmp_path):
    path, marker = tmp_path / "features.pt", tmp_path / "ran"
    _plant_torch(path, marker)
    with pytest.raises(DatasetError, match="Weights only load failed"):
        TorchDataset(str(path)).load()
    assert not marker.exists()


def test_training_cache_ignores_a_planted_entry_and_runs_none_of_it(tmp_path):
    cache = SplitCache(tmp_path, "C1D vocals")
    cache.save(0, 0, 1, "k" * 64, {"best_loss": 0.5, "state": torch.ones(2)})
    (entry,) = tmp_path.rglob("*.pt")
    assert cache.load(0, 0, 1, "k" * 64)["best_loss"] == 0.5
    marker = tmp_path / "ran"
    _plant_torch(entry, marker)
    assert cache.load(0, 0, 1, "k" * 64) is None  # retrained, never unpickled
    assert not marker.exists()


def test_stems_cache_ignores_a_planted_entry_and_runs_none_of_it(tmp_path):
    cache = StemsCache(tmp_path)
    cache.save(7, "key", np.zeros((4, 1, 10), np.float32))
    (entry,) = tmp_path.glob("7-*.npz")
    marker = tmp_path / "ran"
    _plant_numpy(entry, marker)
    assert cache.load(7, "key") is None
    assert not marker.exists()


def test_audio_set_dataset_refuses_a_pickled_object(tmp_path):
    path, marker = tmp_path / "clips.npz", tmp_path / "ran"
    payload = np.empty(1, dtype=object)
    payload[0] = Payload(marker)
    np.savez(path, __meta__=np.array("{}"), track_1=payload)
    with pytest.raises(DatasetError, match="allow_pickle"):
        AudioSetDataset(str(path)).load()
    assert not marker.exists()


def test_local_demucs_repos_are_documented_as_trusted_input():
    """Demucs pickles the model class into its files (weights_only=False): the
    dataset, the separator loader and the parameter reference all say so."""
    for text in (
        DemucsRepoDataset.__doc__,
        separators_module.__doc__,
        (PROJECT / "docs" / "parameters.md").read_text(),
    ):
        assert "weights_only=False" in text or "pickled code" in text
        assert "trust" in text


# Every load in the package, checked statically -------------------------------------

UNSAFE_ALLOWED = {
    # Demucs repos pickle the model class; documented as trusted input (above).
    ("datasets/demucs_repo_dataset.py", "torch.load"),
}
IPC_UNPICKLING = "local_pool.py"
"""The local workers' messages (jobs, shared inputs, results) are pickled over a
socketpair that only the kedro process and the worker it started hold: one
``pickle.loads``, of ``connection.recv_bytes()``, and no file."""


def _loads(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name):
                yield f"{owner.id}.{node.func.attr}", node


def _keyword(node: ast.Call, name: str):
    for keyword in node.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def test_every_load_in_the_package_refuses_pickled_code():
    """torch.load with weights_only=True, np.load with allow_pickle=False, and no
    pickle, joblib or read_pickle at all, except the documented Demucs repo."""
    found = []
    for file in sorted(SRC.rglob("*.py")):
        where = file.relative_to(SRC).as_posix()
        for call, node in _loads(ast.parse(file.read_text())):
            line = f"{where}:{node.lineno} {call}"
            if call == "torch.load":
                found.append(line)
                if (where, call) not in UNSAFE_ALLOWED:
                    assert _keyword(node, "weights_only") is True, line
            elif call == "np.load":
                found.append(line)
                assert _keyword(node, "allow_pickle") is False, line
            elif call == "pickle.loads" and where == IPC_UNPICKLING:
                found.append(line)
                (argument,) = node.args
                assert ast.unparse(argument) == "connection.recv_bytes()", line
            elif call in {"pickle.load", "pickle.loads", "joblib.load"} or (
                call.endswith(".read_pickle")
            ):
                raise AssertionError(f"{line}: unpickles data")
    # the scan sees the loaders tested above, so it is not vacuous
    assert any("torch_dataset.py" in line for line in found), found
    assert any("separation/cache.py" in line for line in found), found
    assert sum(IPC_UNPICKLING in line for line in found) == 1, found


# The catalog's paths -----------------------------------------------------------------

ELSEWHERE = "/elsewhere/PMEmo2019"


def _catalog(env: str, dataset_root: str | None) -> DataCatalog:
    runtime = {"dataset_root": dataset_root} if dataset_root else {}
    config = OmegaConfigLoader(
        str(PROJECT / "conf"),
        base_env="base",
        default_run_env=env,
        runtime_params=runtime,
    )
    return DataCatalog.from_config(config["catalog"])


def _dataset_paths(catalog: DataCatalog) -> dict[str, PurePosixPath]:
    """The file or folder of every dataset any registered pipeline reads or writes
    (catalog factories resolved by name)."""
    from emomucs.pipeline_registry import register_pipelines

    names = set()
    for pipe in register_pipelines().values():
        names |= {n for n in pipe.datasets() if not n.startswith("params:")}
    paths = {}
    for name in sorted(names):
        dataset = catalog.get(name)
        if dataset is None:
            continue  # not in the catalog: a MemoryDataset at run time
        described = dataset._describe()
        location = described.get("filepath") or described.get("path")
        if location is not None:
            paths[name] = PurePosixPath(str(location))
    return paths


def _outputs() -> set[str]:
    from emomucs.pipeline_registry import register_pipelines

    return set().union(*(p.all_outputs() for p in register_pipelines().values()))


@pytest.mark.parametrize("env", ["local", "paper"])
def test_catalog_paths_stay_in_the_project_or_the_dataset_root(env):
    paths = _dataset_paths(_catalog(env, ELSEWHERE))
    assert len(paths) > 30  # the factories resolved for every variant
    root = PurePosixPath(ELSEWHERE)
    raw = {name for name, path in paths.items() if path.is_relative_to(root)}
    assert raw == {
        "pmemo_metadata",
        "pmemo_static_annotations",
        "pmemo_choruses",
        "oracle_stems",
    }
    for name, path in paths.items():
        if name in raw:
            continue
        assert not path.is_absolute(), f"{name}: {path}"
        assert ".." not in path.parts, f"{name}: {path}"
        assert path.parts[0] == "data", f"{name}: {path}"
    # Pointing dataset_root at a real corpus must never let a pipeline write into it.
    assert not raw & _outputs()


def test_default_dataset_root_is_the_synthetic_corpus_inside_the_project():
    paths = _dataset_paths(_catalog("local", None))
    globals_ = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base")["globals"]
    root = PurePosixPath(globals_["dataset_root"])
    assert not root.is_absolute() and root.parts[0] == "data"
    for name in ("pmemo_metadata", "pmemo_choruses", "oracle_stems"):
        assert paths[name].is_relative_to(root), name
    # only the synthetic corpus pipeline writes there, and its paths are fixed
    written = {n for n in _outputs() if n in paths and paths[n].is_relative_to(root)}
    assert written and all(n.startswith("synthetic_") for n in written), written


@pytest.mark.parametrize("env", ["local", "paper"])
def test_path_parameters_are_relative_to_the_project(env):
    params = OmegaConfigLoader(
        str(PROJECT / "conf"), base_env="base", default_run_env=env
    )["parameters"]
    for path in (
        params["separation"]["cache_dir"],
        params["separation"]["separator"]["repo"],
        params["training"]["cache_dir"],
    ):
        if path is not None:
            relative = PurePosixPath(path)
            assert not relative.is_absolute() and ".." not in relative.parts, path
