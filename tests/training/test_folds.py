import numpy as np
import pandas as pd
import pytest

from emomucs.training.folds import (
    TEST,
    assign_folds,
    fingerprint_folds,
    iter_splits,
    validate_folds,
)

IDS = np.arange(100, 100 + 3 * 23, 3)  # 23 tracks, ids not positions


def test_every_track_is_tested_once_and_splits_are_disjoint():
    folds = assign_folds(IDS, outer_folds=5, inner_folds=4, seed=1)
    assert validate_folds(folds) == (5, 4)
    tested = folds.loc[folds["inner_fold"] == TEST, "musicId"]
    assert sorted(tested) == sorted(IDS)
    splits = iter_splits(folds)
    assert len(splits) == 20
    for split in splits:
        train, val, test = map(set, (split.train, split.validation, split.test))
        assert not train & val and not train & test and not val & test
        assert train | val | test == set(IDS)
    # Within one outer fold the validation sets partition the development tracks.
    for k in range(5):
        vals = [set(s.validation) for s in splits if s.outer == k]
        development = set(IDS) - set(splits[4 * k].test)
        assert set().union(*vals) == development
        assert sum(len(v) for v in vals) == len(development)


def test_assignment_depends_on_seed_and_track_set_only():
    a = assign_folds(IDS, 3, 2, seed=7)
    b = assign_folds(IDS[::-1].copy(), 3, 2, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert fingerprint_folds(a) == fingerprint_folds(b)
    c = assign_folds(IDS, 3, 2, seed=8)
    assert fingerprint_folds(a) != fingerprint_folds(c)


def test_outer_split_matches_scikit_learn_kfold():
    from sklearn.model_selection import KFold

    folds = assign_folds(IDS, 3, 2, seed=5)
    for k, (_, test_idx) in enumerate(
        KFold(3, shuffle=True, random_state=5).split(IDS)
    ):
        tested = folds[(folds["outer_fold"] == k) & (folds["inner_fold"] == TEST)]
        assert sorted(tested["musicId"]) == sorted(IDS[test_idx])


def test_bad_inputs_and_tables_are_named():
    with pytest.raises(ValueError, match="track 5: musicId appears twice"):
        assign_folds([1, 5, 5, 7], 2, 2, 0)
    with pytest.raises(ValueError, match="too few"):
        assign_folds([1, 2, 3], 3, 3, 0)
    folds = assign_folds(IDS, 3, 2, 0)
    broken = folds.drop(index=folds.index[folds["musicId"] == IDS[0]][:1])
    with pytest.raises(ValueError, match=f"track {IDS[0]}"):
        validate_folds(broken)
