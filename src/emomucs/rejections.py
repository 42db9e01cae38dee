"""The record of tracks left out of a run, and the policy that decides skip or fail."""

from __future__ import annotations

import logging

import pandas as pd

from emomucs.errors import DatasetInputError

logger = logging.getLogger(__name__)

REJECTION_COLUMNS = ["musicId", "stage", "reason"]


class BadTrackError(DatasetInputError):
    """A track failed a check and the policy says ``on_bad_track: fail``."""


class Rejections:
    """Collects ``(musicId, reason)`` for one stage, logging each or failing at once.

    Args:
        stage: The pipeline stage, recorded with every rejection.
        on_bad_track: ``"skip"`` logs and records the track; ``"fail"`` raises.
    """

    def __init__(self, stage: str, on_bad_track: str = "skip") -> None:
        if on_bad_track not in {"skip", "fail"}:
            raise ValueError(
                f"on_bad_track must be 'skip' or 'fail', got {on_bad_track!r}"
            )
        self.stage = stage
        self.on_bad_track = on_bad_track
        self.rows: list[dict[str, object]] = []

    def add(self, music_id: object, reason: str) -> None:
        message = f"track {music_id}: {reason}"
        if self.on_bad_track == "fail":
            raise BadTrackError(f"{message} (on_bad_track: fail)")
        logger.warning("%s: skipping %s", self.stage, message)
        self.rows.append(
            {"musicId": str(music_id), "stage": self.stage, "reason": reason}
        )

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=REJECTION_COLUMNS)
