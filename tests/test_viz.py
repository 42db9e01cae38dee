"""``kedro viz build`` renders every registered pipeline, headless and offline.

The build runs in a fresh copy of the project (no data needed) with telemetry off;
its JSON (``build/api``) must hold exactly the registered pipelines and nodes, one
collapsible group per experiment variant, and a layer on every dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_mlflow import kedro, make_tiny_project

pytestmark = pytest.mark.slow

LAYERS = {
    "raw",
    "intermediate",
    "primary",
    "feature",
    "model_input",
    "models",
    "model_output",
    "reporting",
}


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    project = make_tiny_project(tmp_path_factory.mktemp("viz") / "project")
    output = kedro(project, "viz", "build")
    assert "Success" in output
    assert not (project / ".telemetry").exists()  # never asked for consent
    return project / "build" / "api"


@pytest.fixture(scope="module")
def registry():
    from emomucs.pipeline_registry import register_pipelines

    return register_pipelines()


def _load(build: Path, *parts: str) -> dict:
    return json.loads(build.joinpath(*parts).read_text())


def test_every_registered_pipeline_is_built(build, registry):
    main = _load(build, "main")
    assert {p["id"] for p in main["pipelines"]} == set(registry)
    for name, pipe in registry.items():
        graph = _load(build, "pipelines", name)
        tasks = {n["full_name"] for n in graph["nodes"] if n["type"] == "task"}
        assert tasks == {node.name for node in pipe.nodes}, name
        # readable names: the short name is the function's, the namespace is a group
        for node in graph["nodes"]:
            if node["type"] == "task":
                assert node["name"] == node["full_name"].rsplit(".", 1)[-1]


@pytest.mark.parametrize("fusion", ["late", "attention"])
def test_variants_collapse_into_namespaces(build, registry, fusion):
    from emomucs.pipelines.experiments import variant_namespaces

    name = f"emomucs_{fusion}"
    graph = _load(build, "pipelines", name)
    groups = graph["modular_pipelines"]
    variants = variant_namespaces(registry[name])
    assert f"{name}.c1d_freeze" in variants
    for variant in variants:
        group = variant.split(".")[0]
        children = {c["id"] for c in groups[group]["children"]}
        assert variant in children, variant
        names = {
            n["full_name"]
            for n in graph["nodes"]
            if n["type"] == "task" and variant in (n["modular_pipelines"] or [])
        }
        expected = {
            f"{variant}.train_nested_cv",
            f"{variant}.evaluate_predictions",
            f"{variant}.plot_predictions",
        }
        if group == "emomucs_attention":
            expected.add(f"{variant}.plot_attention_weights")
        assert expected <= names


def test_every_dataset_has_a_layer(build):
    graph = _load(build, "main")
    datasets = [n for n in graph["nodes"] if n["type"] == "data"]
    assert datasets
    missing = sorted(n["name"] for n in datasets if n.get("layer") not in LAYERS)
    assert not missing, f"datasets without a layer: {missing}"
    assert set(graph["layers"]) <= LAYERS
