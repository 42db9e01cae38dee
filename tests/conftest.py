"""Shared fixtures: the real PMEmo samples beside the project, and quiet, fast torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
PMEMO_SAMPLES = SHARED / "pmemo_samples" / "PMEmo2019"


@pytest.fixture(scope="session")
def pmemo_samples() -> Path:
    """The four real PMEmo2019 choruses with their real metadata and annotations."""
    if not (PMEMO_SAMPLES / "metadata.csv").is_file():
        raise FileNotFoundError(
            f"{PMEMO_SAMPLES} is missing: the tests need ../shared beside the project"
        )
    return PMEMO_SAMPLES


@pytest.fixture(autouse=True, scope="session")
def _single_thread_torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(1)
