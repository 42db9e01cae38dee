"""Every parameter group has a declared schema: misspelt settings fail the run."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from emomucs.config_loader import ConfigLoader
from emomucs.errors import SettingsError
from emomucs.parameters import validate_parameters
from emomucs.settings import CONFIG_LOADER_ARGS
from tests.tiny_project import PROJECT, make_project, subprocess_env


def _parameters(env: str) -> dict:
    """The parameters as ``kedro run --env <env>`` reads them (the project's loader
    settings: base, then the environment merged softly)."""
    arguments = {**CONFIG_LOADER_ARGS, "default_run_env": env}
    return ConfigLoader(str(PROJECT / "conf"), **arguments)["parameters"]


@pytest.fixture(scope="module")
def base() -> dict:
    return _parameters("base")


@pytest.mark.parametrize("env", ["base", "paper", "benchmark"])
def test_every_environment_holds_only_declared_settings(env):
    parameters = _parameters(env)
    assert {"training", "separation", "networks", "emomucs_late"} <= set(parameters)
    validate_parameters(parameters)


MISSPELT = [
    # (where the wrong key goes, the wrong key, the name the message suggests)
    ("clipping", "clip_second", "clipping.clip_seconds"),
    ("contributions", "shapely", "contributions.shapley"),
    ("cv", "outer_fold", "cv.outer_folds"),
    ("training", "max_epoch", "training.max_epochs"),
    ("training", "repeat", "training.repeats"),  # a CVOptions field
    ("networks.C2D", "n_filter", "networks.C2D.n_filters"),
    ("networks", "WaveC1", "networks.WaveC1D"),
    ("features", "sample_rat", "features.sample_rate"),
    ("features.log_mel", "n_mel", "features.log_mel.n_mels"),
    ("ingestion", "on_bad_tracks", "ingestion.on_bad_track"),
    ("plots", "colourmap", "plots.colormap"),
    ("reference", "n_alpha", "reference.n_alphas"),
    ("separation", "output_sample_rat", "separation.output_sample_rate"),
    ("separation.apply", "shift", "separation.apply.shifts"),
    ("separation.separator", "knd", "separation.separator.kind"),
    ("separator_training", "valid_fractions", "separator_training.valid_fraction"),
    ("separator_training.training", "warmup_step", "separator_training.training.warmup_steps"),
    ("separator_training.training.augment", "flips", "separator_training.training.augment.flip"),
    ("separator_training.evaluation", "overlp", "separator_training.evaluation.overlap"),
    ("synthetic_corpus", "n_track", "synthetic_corpus.n_tracks"),
    ("synthetic_corpus.multitrack", "duration", "synthetic_corpus.multitrack.duration_s"),
    ("emomucs_late.c1d_freeze.experiment", "fusoin", "emomucs_late.c1d_freeze.experiment.fusion"),
    ("emomucs_early", "c1d_fulll", "emomucs_early.c1d_full"),
    ("baselines.c1d", "experiments", "baselines.c1d.experiment"),
    ("", "trainig", "training"),
]  # fmt: skip


@pytest.mark.parametrize(("where", "key", "suggestion"), MISSPELT)
def test_a_misspelt_key_names_itself_its_group_and_the_closest_setting(
    base, where, key, suggestion
):
    parameters = copy.deepcopy(base)
    group = parameters
    for part in filter(None, where.split(".")):
        group = group[part]
    assert key not in group
    group[key] = {"experiment": {}} if where == "emomucs_early" else 1
    with pytest.raises(SettingsError) as raised:
        validate_parameters(parameters)
    name = f"{where}.{key}" if where else key
    assert str(raised.value).startswith(f"{name} is not a ")
    assert str(raised.value).endswith(f"did you mean {suggestion}?")


def test_a_value_of_the_wrong_type_is_named(base):
    parameters = copy.deepcopy(base)
    parameters["training"]["max_epochs"] = "many"
    with pytest.raises(SettingsError, match=r"^training\.max_epochs: .*'many'"):
        validate_parameters(parameters)
    parameters = copy.deepcopy(base)
    parameters["separation"]["separator"]["kind"] = "remote"
    with pytest.raises(SettingsError, match=r"^separation\.separator\.kind: "):
        validate_parameters(parameters)


def test_kedro_run_with_a_misspelt_param_stops_before_running(tmp_path):
    project = make_project(tmp_path / "project", {})
    done = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipeline=data", "--env=tiny"]
        + ["--params=training.max_epoch=50"],
        cwd=project,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert (
        "Error: training.max_epoch is not a setting; did you mean "
        "training.max_epochs?" in done.stderr
    )
    assert "Traceback" not in output
    assert not (project / "data").exists()  # nothing ran


def test_the_separator_repo_is_configured_once():
    """separator_training writes the repo that separation reads: both take the path
    from globals.yml's separator_repo."""
    arguments = {**CONFIG_LOADER_ARGS, "default_run_env": "base"}
    loader = ConfigLoader(str(PROJECT / "conf"), **arguments)
    repo = loader["globals"]["separator_repo"]
    assert loader["parameters"]["separation"]["separator"]["repo"] == repo
    assert loader["catalog"]["separator_model"]["path"] == repo


@pytest.mark.parametrize(
    ("key", "value"),
    [("strategy", "full"), ("sources", ["vocals", "drums"]), ("model", "C1D")],
)
def test_a_setting_that_would_rewire_a_variant_is_refused(base, key, value):
    """The pipeline of emomucs_late.c1d_freeze is wired for frozen C1D over every stem:
    a strategy, sources or model from conf cannot change it."""
    parameters = copy.deepcopy(base)
    parameters["emomucs_late"]["c1d_freeze"]["experiment"][key] = value
    with pytest.raises(
        SettingsError, match=rf"c1d_freeze\.experiment\.{key} is .*grid"
    ):
        validate_parameters(parameters)


def test_a_variant_entry_may_name_only_what_differs():
    """Without the generated grid (another loader), a partial entry is valid: the
    wiring keys it leaves out are the grid's."""
    validate_parameters(
        {"emomucs_late": {"c1d_freeze": {"experiment": {"fusion_dropout": 0.5}}}}
    )
