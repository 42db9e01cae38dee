"""What identifies a run: the code, the corpus, the separator and the process."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from emomucs.audio import AudioSet

RUN_PID, RUN_HOST = "run_pid", "run_host"
"""Tags naming the process that holds a run open, so a later run can tell whether
it is still alive (:mod:`emomucs.hooks.dead_runs`)."""


def git_identity(path: str | Path) -> dict[str, str]:
    """The commit checked out at ``path`` and whether tracked files differ from it.

    Returns ``{"git_commit": "unknown"}`` outside a git work tree or without git.
    """

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown"}
    return {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        MLFLOW_GIT_COMMIT: commit,
    }


def process_identity() -> dict[str, str]:
    """``run_pid`` and ``run_host`` of this process."""
    return {RUN_PID: str(os.getpid()), RUN_HOST: socket.gethostname()}


def corpus_name(root: str) -> str:
    """``synthetic`` for the generated corpus, else the root folder's name."""
    parts = Path(root).parts
    return "synthetic" if "synthetic" in parts else (Path(root).name or root)


def separator_of(data: Any) -> str | None:
    """The separator named by stems (an AudioSet) or by a stems feature set."""
    if isinstance(data, AudioSet):
        return data.attrs.get("separator") if data.sources else None
    if isinstance(data, Mapping) and "settings" in data and "sources" in data:
        if list(data["sources"]) != ["mix"]:
            settings = data["settings"]
            if isinstance(settings, Mapping):
                return (settings.get("audio_attrs") or {}).get("separator")
    return None
