"""Nested cross-validation folds, computed once and shared by every model.

The fold table has one row per (outer fold, track): ``inner_fold`` is ``-1`` when the
track is in that outer fold's test set, else the inner split whose validation set
holds it. Every model reads the same table, so results are paired across models.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from itertools import count

import numpy as np
import pandas as pd

from emomucs.errors import DatasetInputError

TEST = -1
"""``inner_fold`` value of a track that is in the outer fold's test set."""

FOLD_COLUMNS = ["outer_fold", "musicId", "inner_fold"]


@dataclass(frozen=True)
class Split:
    """Track ids of one inner split of one outer fold."""

    outer: int
    inner: int
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def smallest_parts(
    n_tracks: int, outer_folds: int, inner_folds: int
) -> tuple[int, int]:
    """The fewest training tracks of any inner split and test tracks of any outer fold.

    KFold gives the first ``n % k`` folds one track more, so the smallest training
    part sits beside the largest test (or validation) fold.
    """
    outer_train = n_tracks - -(-n_tracks // outer_folds)
    inner_train = outer_train - -(-outer_train // inner_folds)
    return inner_train, n_tracks // outer_folds


def check_fold_sizes(
    n_tracks: int,
    outer_folds: int,
    inner_folds: int,
    min_train_tracks: int = 1,
    min_test_tracks: int = 1,
) -> None:
    """Refuse folds that leave too few tracks to train on or to score.

    Raises:
        DatasetInputError: The numbers: folds, tracks, what they leave, what is needed,
            and how many tracks these folds would need.
    """
    train, test = smallest_parts(n_tracks, outer_folds, inner_folds)
    if train >= min_train_tracks and test >= min_test_tracks:
        return
    needed = next(
        n
        for n in count(n_tracks + 1)
        if smallest_parts(n, outer_folds, inner_folds)[0] >= min_train_tracks
        and smallest_parts(n, outer_folds, inner_folds)[1] >= min_test_tracks
    )
    raise DatasetInputError(
        f"{outer_folds} outer × {inner_folds} inner folds over {n_tracks} tracks "
        f"leave {train} training track(s) per inner split (need at least "
        f"cv.min_train_tracks = {min_train_tracks}) and {test} test track(s) per "
        f"outer fold (need at least cv.min_test_tracks = {min_test_tracks}); these "
        f"folds need at least {needed} tracks: use more tracks or fewer folds"
    )


def assign_folds(
    music_ids: np.ndarray | list[int],
    outer_folds: int,
    inner_folds: int,
    seed: int,
    min_train_tracks: int = 1,
    min_test_tracks: int = 1,
) -> pd.DataFrame:
    """Nested KFold assignment, as the original: shuffled, one seed, no strata.

    The ids are sorted first so the assignment depends only on the set of tracks,
    not on the order of the table they came from.

    Args:
        music_ids: Track ids, unique.
        outer_folds: Outer KFold splits (test folds).
        inner_folds: Inner KFold splits of each outer training part.
        seed: ``random_state`` of both KFolds (the original uses one for both).
        min_train_tracks: Fewest training tracks an inner split may have.
        min_test_tracks: Fewest test tracks an outer fold may have.

    Returns:
        The fold table (columns ``outer_fold``, ``musicId``, ``inner_fold``).

    Raises:
        ValueError: Duplicate ids.
        DatasetInputError: Too few tracks for the requested folds and minimums.
    """
    from sklearn.model_selection import KFold  # here: workers never import it

    ids = np.sort(np.asarray(music_ids, dtype=np.int64))
    duplicated = ids[1:][ids[1:] == ids[:-1]]
    if duplicated.size:
        raise ValueError(f"track {int(duplicated[0])}: musicId appears twice")
    if outer_folds < 2 or inner_folds < 2:
        raise DatasetInputError(
            f"need at least 2 outer and 2 inner folds, got {outer_folds}×{inner_folds}"
        )
    # The smallest inner training part must still hold one track per inner fold.
    smallest_train = len(ids) - -(-len(ids) // outer_folds)
    if smallest_train < inner_folds:
        raise DatasetInputError(
            f"{len(ids)} tracks are too few for {outer_folds} outer × "
            f"{inner_folds} inner folds"
        )
    check_fold_sizes(
        len(ids), outer_folds, inner_folds, min_train_tracks, min_test_tracks
    )
    outer = KFold(n_splits=outer_folds, shuffle=True, random_state=seed)
    inner = KFold(n_splits=inner_folds, shuffle=True, random_state=seed)
    rows = []
    for k, (train_idx, test_idx) in enumerate(outer.split(ids)):
        rows += [(k, int(i), TEST) for i in ids[test_idx]]
        for j, (_, val_idx) in enumerate(inner.split(train_idx)):
            rows += [(k, int(i), j) for i in ids[train_idx[val_idx]]]
    table = pd.DataFrame(rows, columns=FOLD_COLUMNS)
    return table.sort_values(["outer_fold", "musicId"], ignore_index=True)


def validate_folds(folds: pd.DataFrame) -> tuple[int, int]:
    """Check a fold table's shape and return its (outer, inner) fold counts.

    Raises:
        ValueError: Missing columns, a track missing from an outer fold, a track
            in more than one test fold, or an empty split.
    """
    missing = set(FOLD_COLUMNS) - set(folds.columns)
    if missing:
        raise ValueError(f"fold table lacks columns {sorted(missing)}")
    outer_ids = sorted(folds["outer_fold"].unique())
    n_outer = len(outer_ids)
    if outer_ids != list(range(n_outer)):
        raise ValueError(f"outer folds must be 0..{n_outer - 1}, got {outer_ids}")
    all_ids = set(folds["musicId"])
    tested = folds.loc[folds["inner_fold"] == TEST, "musicId"]
    twice = tested[tested.duplicated()]
    if len(twice):
        raise ValueError(f"track {int(twice.iloc[0])}: in more than one test fold")
    n_inner = 0
    for k, part in folds.groupby("outer_fold"):
        absent = all_ids - set(part["musicId"])
        if absent:
            raise ValueError(f"track {min(absent)}: missing from outer fold {k}")
        inner = sorted(part.loc[part["inner_fold"] != TEST, "inner_fold"].unique())
        if not inner or inner != list(range(len(inner))):
            raise ValueError(f"outer fold {k}: inner folds must be 0..n-1, got {inner}")
        if (part["inner_fold"] == TEST).sum() == 0:
            raise ValueError(f"outer fold {k}: empty test set")
        n_inner = max(n_inner, len(inner))
    return n_outer, n_inner


def iter_splits(folds: pd.DataFrame) -> list[Split]:
    """Every (outer, inner) split of a fold table, in order."""
    n_outer, _ = validate_folds(folds)
    splits = []
    for k in range(n_outer):
        part = folds[folds["outer_fold"] == k]
        test = part.loc[part["inner_fold"] == TEST, "musicId"].to_numpy()
        development = part[part["inner_fold"] != TEST]
        for j in sorted(development["inner_fold"].unique()):
            val_mask = development["inner_fold"] == j
            splits.append(
                Split(
                    outer=k,
                    inner=int(j),
                    train=development.loc[~val_mask, "musicId"].to_numpy(),
                    validation=development.loc[val_mask, "musicId"].to_numpy(),
                    test=test,
                )
            )
    return splits


def fingerprint_folds(folds: pd.DataFrame) -> str:
    """A short hash of the assignment, to check two artifacts used the same folds."""
    ordered = folds[FOLD_COLUMNS].sort_values(FOLD_COLUMNS).to_numpy(dtype=np.int64)
    return hashlib.sha256(ordered.tobytes()).hexdigest()[:16]
