"""Ingestion: read the PMEmo2019 layout into one validated, labelled track table.

Every row that cannot be trusted is rejected with its musicId and the reason (or the run
fails, with ``on_bad_track: fail``); nothing is repaired silently.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import pandas as pd

from emomucs.audio import AUDIO_EXTENSIONS
from emomucs.errors import DatasetInputError
from emomucs.rejections import Rejections

logger = logging.getLogger(__name__)

METADATA_COLUMNS = [
    "musicId",
    "fileName",
    "title",
    "artist",
    "album",
    "duration",
    "chorus_start_time",
    "chorus_end_time",
]
AROUSAL_COLUMN = "Arousal(mean)"
VALENCE_COLUMN = "Valence(mean)"
_TIME_PATTERN = re.compile(r"^\s*(\d{1,3}):([0-5]\d)(?:\.(\d+))?\s*$")


def parse_chorus_time(text: object) -> float:
    """``"mm:ss"`` (optionally ``"mm:ss.f"``) to seconds.

    Raises:
        ValueError: The text is not a time of that form.
    """
    match = _TIME_PATTERN.match(str(text))
    if match is None:
        raise ValueError(f"chorus time {text!r} is not mm:ss")
    minutes, seconds, fraction = match.groups()
    return int(minutes) * 60 + int(seconds) + float(f"0.{fraction or 0}")


def _require_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    if frame.empty and len(frame.columns) == 0:
        raise DatasetInputError(f"{what} is empty: no header and no rows")
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DatasetInputError(
            f"{what} lacks columns {missing}; found {list(frame.columns)}"
        )


def _music_ids(frame: pd.DataFrame) -> pd.Series:
    """musicId as nullable integers; anything that is not a whole number becomes NA."""
    numbers = pd.to_numeric(frame["musicId"], errors="coerce")
    whole = numbers.notna() & (numbers == np.floor(numbers))
    return numbers.where(whole).astype("Int64")


def _file_name_problem(file_name: object) -> str | None:
    """Why ``fileName`` cannot name a file directly inside ``chorus/``, or None."""
    if not isinstance(file_name, str) or not file_name.strip():
        return "empty fileName"
    posix, windows = PurePosixPath(file_name), PureWindowsPath(file_name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        return f"fileName {file_name!r} is an absolute path outside the dataset folder"
    if ".." in posix.parts or ".." in windows.parts:
        return f"fileName {file_name!r} points outside the dataset folder"
    if posix.suffix.lower() not in AUDIO_EXTENSIONS:
        return f"fileName {file_name!r} is not mp3, wav or flac"
    return None


def validate_metadata(
    metadata: pd.DataFrame, options: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check PMEmo ``metadata.csv`` row by row and parse its chorus times.

    Args:
        metadata: The raw metadata table.
        options: ``on_bad_track`` (``skip`` | ``fail``) and ``chorus_span_tolerance_s``,
            how far the chorus span may differ from the chorus file's ``duration``.

    Returns:
        The valid rows with ``chorus_start_s``/``chorus_end_s`` added, and the rejections.
    """
    _require_columns(metadata, METADATA_COLUMNS, "metadata.csv")
    rejections = Rejections("ingestion", options.get("on_bad_track", "skip"))
    table = metadata.copy()
    table["musicId"] = _music_ids(metadata)
    duplicated = table["musicId"].duplicated(keep=False) & table["musicId"].notna()
    tolerance = float(options.get("chorus_span_tolerance_s", 5.0))
    keep, starts, ends = [], [], []
    for index, row in table.iterrows():
        raw_id = metadata.at[index, "musicId"]
        reason = None
        if pd.isna(row["musicId"]):
            reason = f"musicId {raw_id!r} is not a whole number"
        elif duplicated[index]:
            reason = "duplicate musicId in metadata.csv"
        else:
            reason = _file_name_problem(row["fileName"])
        start = end = np.nan
        if reason is None:
            try:
                start = parse_chorus_time(row["chorus_start_time"])
                end = parse_chorus_time(row["chorus_end_time"])
            except ValueError as error:
                reason = str(error)
        duration = pd.to_numeric(pd.Series([row["duration"]]), errors="coerce").iloc[0]
        if reason is None and end <= start:
            reason = (
                f"chorus_end_time {row['chorus_end_time']} is not after "
                f"chorus_start_time {row['chorus_start_time']}"
            )
        if reason is None and not (np.isfinite(duration) and duration > 0):
            reason = f"duration {row['duration']!r} is not a positive number"
        if reason is None and abs((end - start) - duration) > tolerance:
            reason = (
                f"chorus {row['chorus_start_time']}-{row['chorus_end_time']} spans "
                f"{end - start:.1f} s but the chorus file lasts {duration:.1f} s "
                f"(tolerance {tolerance:g} s): chorus times outside the song"
            )
        if reason is not None:
            rejections.add(
                raw_id if pd.isna(row["musicId"]) else row["musicId"], reason
            )
            continue
        keep.append(index)
        starts.append(start)
        ends.append(end)
    valid = table.loc[keep].copy()
    _report_undecodable_text(valid)
    valid["musicId"] = valid["musicId"].astype(int)
    valid["duration"] = pd.to_numeric(valid["duration"]).astype(float)
    valid["chorus_start_s"] = starts
    valid["chorus_end_s"] = ends
    return valid.reset_index(drop=True), rejections.to_frame()


def _report_undecodable_text(table: pd.DataFrame) -> None:
    """Log rows whose text had bytes that were not UTF-8 (read as U+FFFD)."""
    for column in ("title", "artist", "album"):
        damaged = table[column].astype(str).str.contains("\ufffd", regex=False)
        for music_id in table.loc[damaged, "musicId"]:
            logger.warning(
                "track %s: %s is not valid UTF-8; undecodable bytes shown as U+FFFD "
                "(text only, the track is kept)",
                music_id,
                column,
            )


def rescale_label(value: float) -> float:
    """PMEmo's [0, 1] scale to the models' [-1, 1] (``2v - 1``)."""
    return 2.0 * value - 1.0


def attach_labels(
    tracks: pd.DataFrame,
    annotations: pd.DataFrame,
    metadata: pd.DataFrame,
    options: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Join static annotations on musicId and rescale them to [-1, 1].

    Tracks without exactly one annotation row, or with a NaN or out-of-range label, are
    rejected; annotation rows for ids absent from ``metadata`` (all rows, valid or not)
    are recorded too.
    """
    _require_columns(
        annotations,
        ["musicId", AROUSAL_COLUMN, VALENCE_COLUMN],
        "static_annotations.csv",
    )
    rejections = Rejections("ingestion", options.get("on_bad_track", "skip"))
    labels = annotations.copy()
    labels["musicId"] = _music_ids(annotations)
    for raw_id in annotations.loc[labels["musicId"].isna(), "musicId"]:
        rejections.add(raw_id, f"annotation musicId {raw_id!r} is not a whole number")
    labels = labels.dropna(subset=["musicId"])
    known = set(_music_ids(metadata).dropna())
    for music_id in sorted(set(labels["musicId"]) - known):
        logger.info("annotation for musicId %s has no metadata row: ignored", music_id)
        rejections.add(
            music_id, "annotation row for a musicId absent from metadata.csv"
        )
    counts = labels["musicId"].value_counts()
    by_id = labels.drop_duplicates("musicId", keep=False).set_index("musicId")
    keep, arousal, valence = [], [], []
    for index, row in tracks.iterrows():
        music_id = int(row["musicId"])
        if music_id not in counts:
            rejections.add(music_id, "no static annotation")
            continue
        if counts[music_id] > 1:
            rejections.add(music_id, _duplicate_labels_reason(labels, music_id))
            continue
        raw = {
            "arousal": by_id.at[music_id, AROUSAL_COLUMN],
            "valence": by_id.at[music_id, VALENCE_COLUMN],
        }
        values = {
            name: pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
            for name, value in raw.items()
        }
        bad = [
            _label_problem(name, raw[name], value)
            for name, value in values.items()
            if pd.isna(value) or not 0.0 <= value <= 1.0
        ]
        if bad:
            rejections.add(music_id, "; ".join(bad))
            continue
        keep.append(index)
        arousal.append(rescale_label(float(values["arousal"])))
        valence.append(rescale_label(float(values["valence"])))
    labelled = tracks.loc[keep].copy()
    labelled["arousal"] = arousal
    labelled["valence"] = valence
    return labelled.reset_index(drop=True), rejections.to_frame()


def _label_problem(name: str, raw: object, value: float) -> str:
    """Why a label cannot be used: missing, not a number, or outside [0, 1]."""
    if pd.isna(raw) or (isinstance(raw, str) and not raw.strip()):
        return f"{name} is missing (NaN)"
    if pd.isna(value):
        return f"{name} {raw!r} is not a number"
    return f"{name} {value:g} is outside [0, 1]"


def _duplicate_labels_reason(labels: pd.DataFrame, music_id: int) -> str:
    """Say whether a track's repeated annotation rows agree or conflict."""
    rows = labels.loc[labels["musicId"] == music_id, [AROUSAL_COLUMN, VALENCE_COLUMN]]
    differing = [
        f"{column} {' vs '.join(str(v) for v in rows[column].tolist())}"
        for column in rows.columns
        if rows[column].astype(str).nunique() > 1
    ]
    if differing:
        return (
            f"{len(rows)} static annotation rows that conflict "
            f"({'; '.join(differing)}): which one is right cannot be told"
        )
    return f"{len(rows)} identical static annotation rows (duplicated, not averaged)"


def audio_key(file_name: str) -> str:
    """The key of a ``fileName`` in the chorus folder dataset."""
    return PurePosixPath(file_name).with_suffix("").as_posix()


def locate_audio(
    tracks: pd.DataFrame, choruses: dict[str, Callable], options: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep tracks whose ``fileName`` is present in ``chorus/``.

    ``choruses`` lists only entries inside the dataset's chorus folder, so no
    ``fileName`` can reach outside it; decoding happens later, in clipping, where an
    entry that is a link out of the folder, a directory or a broken link is rejected
    with what it is.
    """
    rejections = Rejections("ingestion", options.get("on_bad_track", "skip"))
    present = tracks["fileName"].map(lambda name: audio_key(name) in choruses)
    for music_id, file_name in tracks.loc[~present, ["musicId", "fileName"]].values:
        rejections.add(music_id, f"audio file chorus/{file_name} not found")
    located = tracks.loc[present].sort_values("musicId").reset_index(drop=True)
    logger.info("ingestion: %d labelled tracks with audio", len(located))
    return located, rejections.to_frame()


def combine_rejections(*tables: pd.DataFrame) -> pd.DataFrame:
    """Stack per-step rejection tables into one."""
    return pd.concat(tables, ignore_index=True)
