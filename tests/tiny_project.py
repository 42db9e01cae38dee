"""Throw-away copies of the project and tiny Demucs separators, for end-to-end tests.

:func:`make_project` copies this checkout's ``conf/base`` and ``pyproject.toml`` into a
folder, adds an environment with tiny parameters (whole top-level blocks: a Kedro
environment replaces a top-level key rather than merging into it) and leaves the code
where it is: :func:`kedro` runs the CLI with this checkout's ``src`` first on
``PYTHONPATH``, so the run tests what is checked out. :func:`write_tiny_repo` writes a
local Demucs repo holding a randomly initialised HTDemucs of a few thousand parameters,
enough to exercise the real separation code in well under a second per clip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from kedro.config import OmegaConfigLoader

PROJECT = Path(__file__).resolve().parents[1]

TINY_RATE = 8000
"""The tiny separator's rate: clips are resampled to it and the stems back."""


def merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` applied leaf by leaf (a non-dict value replaces)."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = merge(base[key], value)
        else:
            merged[key] = value
    return merged


def subprocess_env(**extra: str) -> dict[str, str]:
    """Offline, single-threaded, quiet, with this checkout's code first on the path."""
    env = dict(os.environ)
    env.update(
        KEDRO_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        HF_HUB_OFFLINE="1",
        CI="true",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        MPLBACKEND="Agg",
    )
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PROJECT), str(PROJECT / "src"), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.update(extra)
    return env


def kedro(
    path: Path, *args: str, timeout: int = 600, env: dict[str, str] | None = None
) -> str:
    """Run the kedro CLI in ``path``; fail with the end of its output when it fails.

    ``env`` adds environment variables (e.g. ``PYTHONHASHSEED``) for this run.
    """
    done = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        check=False,
        cwd=path,
        env=subprocess_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    if done.returncode:
        raise AssertionError(f"kedro {' '.join(args)} failed:\n{output[-6000:]}")
    return output


def make_project(path: Path, overrides: dict[str, Any], env: str = "tiny") -> Path:
    """This checkout's project config with an ``env`` holding ``overrides``.

    MLflow tracking is turned off in ``env`` for every pipeline: these runs test the
    data, and an MLflow store would only add seconds.
    """
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT / "pyproject.toml", path / "pyproject.toml")
    shutil.copytree(PROJECT / "conf" / "base", path / "conf" / "base")
    (path / "conf" / "local").mkdir(parents=True, exist_ok=True)
    (path / "src").mkdir(exist_ok=True)
    params = OmegaConfigLoader(
        str(path / "conf"), base_env="base", default_run_env="base"
    )["parameters"]
    tiny = {key: merge(params.get(key, {}), value) for key, value in overrides.items()}
    (path / "conf" / env).mkdir(exist_ok=True)
    (path / "conf" / env / "parameters.yml").write_text(yaml.safe_dump(tiny))
    mlflow = yaml.safe_load((PROJECT / "conf" / "base" / "mlflow.yml").read_text())
    from emomucs.pipeline_registry import register_pipelines

    mlflow["tracking"]["disable_tracking"]["pipelines"] = sorted(register_pipelines())
    (path / "conf" / env / "mlflow.yml").write_text(yaml.safe_dump(mlflow))
    return path


def latest(project: Path, relative: str) -> Path:
    """The newest version of a versioned dataset's file."""
    folder = project / relative
    version = sorted(p.name for p in folder.iterdir())[-1]
    return folder / version / folder.name


def versions(project: Path, relative: str) -> list[Path]:
    """Every version of a versioned dataset's file, oldest first."""
    folder = project / relative
    return [folder / v / folder.name for v in sorted(p.name for p in folder.iterdir())]


def tiny_htdemucs(seed: int = 0):
    """A randomly initialised stereo HTDemucs at 8 kHz, depth 2, 8 channels."""
    import torch
    from demucs.htdemucs import HTDemucs

    from emomucs import SOURCES

    torch.manual_seed(seed)
    return HTDemucs(
        list(SOURCES),
        audio_channels=2,
        channels=8,
        depth=2,
        nfft=512,
        t_layers=1,
        t_heads=2,
        samplerate=TINY_RATE,
        segment=1,
    ).eval()


def write_tiny_repo(folder: Path, name: str = "tiny", seed: int = 0) -> Path:
    """A local Demucs repo with one tiny model, written as Demucs writes one."""
    from demucs.states import save_with_checksum

    from emomucs.separation import package_model

    folder.mkdir(parents=True, exist_ok=True)
    save_with_checksum(package_model(tiny_htdemucs(seed), {}), folder / f"{name}.th")
    (written,) = folder.glob(f"{name}-*.th")
    return written


def project_config(project: Path, env: str = "tiny") -> OmegaConfigLoader:
    """The project's config loader for ``env``, as ``kedro run --env`` reads it."""
    return OmegaConfigLoader(
        str(project / "conf"), base_env="base", default_run_env=env
    )


def make_synthetic_corpus(project: Path, env: str = "tiny") -> None:
    """``kedro run --pipeline=synthetic_corpus`` in this process (no CLI start-up).

    The catalog's relative paths are taken from the project folder, as Kedro does.
    """
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from emomucs.pipelines import synthetic_corpus

    config = project_config(project, env)
    pipe = synthetic_corpus.create_pipeline()
    entries = {}
    for name in pipe.datasets():
        if name.startswith("params:"):
            continue
        entry = dict(config["catalog"][name])
        for key in ("filepath", "path"):
            if key in entry and not Path(entry[key]).is_absolute():
                entry[key] = str(project / entry[key])
        entries[name] = entry
    catalog = DataCatalog.from_config(entries)
    catalog["params:synthetic_corpus"] = MemoryDataset(
        config["parameters"]["synthetic_corpus"]
    )
    SequentialRunner().run(pipe, catalog)
