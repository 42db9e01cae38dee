"""Fixtures for separation tests: a local Demucs repo holding a tiny HTDemucs."""

from __future__ import annotations

from pathlib import Path

import pytest

from .tiny import tiny_htdemucs, write_repo


@pytest.fixture
def tiny_repo(tmp_path) -> Path:
    folder = tmp_path / "repo"
    write_repo(folder, "tiny", tiny_htdemucs())
    return folder
