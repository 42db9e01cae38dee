"""Which upstream stages each registered pipeline runs: the baselines separate nothing."""

from __future__ import annotations

import pytest

from emomucs.pipeline_registry import register_pipelines
from emomucs.pipelines.separation import create_pipeline as create_separation_pipeline

SEPARATION_NODES = {node.name for node in create_separation_pipeline().nodes}


@pytest.fixture(scope="module")
def pipelines():
    return register_pipelines()


def test_baselines_read_the_mix_and_separate_no_clip(pipelines):
    baselines = pipelines["baselines"]
    names = {node.name for node in baselines.nodes}
    assert names & SEPARATION_NODES == {"downmix_clips"}
    assert "stems" not in baselines.all_outputs() | baselines.inputs()
    assert {"mix", "mix_log_mel", "track_table"} <= baselines.all_outputs()


@pytest.mark.parametrize("name", ["emomucs_late", "sources", "combinations"])
def test_experiments_on_stems_keep_the_whole_separation_stage(pipelines, name):
    names = {node.name for node in pipelines[name].nodes}
    assert SEPARATION_NODES <= names
    assert {"separate_sources", "plot_separation_sdr"} <= names
