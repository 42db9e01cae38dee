import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import mean_squared_error, r2_score

from emomucs.training.metrics import (
    compare_folds,
    paired_difference,
    r2,
    rmse,
    summarise_folds,
)


def test_rmse_and_r2_match_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(5):
        truth = rng.uniform(-1, 1, 40)
        guess = truth + rng.normal(0, rng.uniform(0.05, 2), 40)
        assert np.isclose(rmse(truth, guess), np.sqrt(mean_squared_error(truth, guess)))
        assert np.isclose(r2(truth, guess), r2_score(truth, guess))
    assert r2([0.5, 0.5], [0.5, 0.5]) == r2_score([0.5, 0.5], [0.5, 0.5])


def test_fold_summary_mean_sd_and_pooled():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "musicId": range(30),
            "outer_fold": np.repeat([0, 1, 2], 10),
            "valence": rng.uniform(-1, 1, 30),
            "arousal": rng.uniform(-1, 1, 30),
        }
    )
    frame["valence_pred"] = frame["valence"] + rng.normal(0, 0.3, 30)
    frame["arousal_pred"] = frame["arousal"] * 0.5
    table = summarise_folds(frame).set_index("scope")
    assert (table["repeat"] == [0, 0, 0, 0, -1, -1, -1, -1]).all()  # no column: 0
    per_fold = [
        r2_score(part["valence"], part["valence_pred"])
        for _, part in frame.groupby("outer_fold")
    ]
    assert np.allclose(table.loc["fold", "r2_valence"], per_fold)
    assert np.isclose(table.loc["mean", "r2_valence"], np.mean(per_fold))
    assert np.isclose(table.loc["sd", "r2_valence"], np.std(per_fold, ddof=1))
    assert np.isclose(
        table.loc["pooled", "rmse_arousal"],
        np.sqrt(mean_squared_error(frame["arousal"], frame["arousal_pred"])),
    )
    assert table.loc["pooled", "n_tracks"] == 30


def test_repeats_are_scored_per_fold_and_pooled_per_repeat():
    rng = np.random.default_rng(2)
    ids = np.arange(20)
    parts = []
    for repeat in (0, 1):
        part = pd.DataFrame(
            {
                "musicId": ids,
                "outer_fold": ids % 2,
                "valence": np.linspace(-1, 1, 20),
                "arousal": np.linspace(1, -1, 20),
            }
        )
        part["valence_pred"] = part["valence"] + rng.normal(0, 0.2 + repeat, 20)
        part["arousal_pred"] = part["arousal"] + rng.normal(0, 0.3, 20)
        parts.append(part.assign(repeat=repeat))
    frame = pd.concat(parts, ignore_index=True)
    table = summarise_folds(frame)
    assert list(table["scope"]) == ["fold"] * 4 + ["repeat"] * 2 + [
        "mean",
        "sd",
        "pooled",
        "pooled_sd",
    ]
    pooled = [
        r2_score(p["valence"], p["valence_pred"]) for _, p in frame.groupby("repeat")
    ]
    by_scope = table.set_index("scope")
    assert np.allclose(by_scope.loc["repeat", "r2_valence"], pooled)
    assert np.isclose(by_scope.loc["pooled", "r2_valence"], np.mean(pooled))
    assert np.isclose(by_scope.loc["pooled_sd", "r2_valence"], np.std(pooled, ddof=1))
    assert by_scope.loc["pooled", "n_tracks"] == 20  # tracks, not rows
    folds = table[table["scope"] == "fold"]
    assert list(zip(folds["repeat"], folds["outer_fold"])) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]


def test_corrected_interval_is_wider_than_the_plain_t_interval():
    """Differences that a plain t over folds calls significant are not, once the
    overlap of training sets is accounted for (n_test/n_train = 1/2: 3 folds)."""
    d = np.array([-0.04, 0.0, -0.03, -0.01, -0.035, -0.005])
    result = paired_difference(d, test_train_ratio=0.5)
    n, sd = len(d), np.std(d, ddof=1)
    q = stats.t.ppf(0.975, n - 1)
    assert result["mean"] == pytest.approx(-0.02)
    assert result["ci_high_naive"] == pytest.approx(-0.02 + q * sd / np.sqrt(n))
    assert result["ci_high_naive"] < 0  # plain t: significant
    assert result["ci_high"] == pytest.approx(-0.02 + q * sd * np.sqrt(1 / n + 0.5))
    assert result["ci_low"] < 0 < result["ci_high"]  # corrected: not significant
    t = -0.02 / (sd * np.sqrt(1 / n + 0.5))
    assert result["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), n - 1))
    assert np.isnan(paired_difference([0.1], 0.5)["ci_low"])


def test_folds_are_paired_by_repeat_and_outer_fold():
    def folds(values):
        return [
            {"repeat": r, "outer_fold": k, "n_tracks": 10, "rmse_valence": v}
            | {m: 0.0 for m in ("rmse_arousal", "r2_valence", "r2_arousal")}
            for (r, k), v in values.items()
        ]

    ours = folds({(0, 0): 0.3, (0, 1): 0.5, (1, 0): 0.4})
    theirs = folds({(0, 1): 0.4, (0, 0): 0.1, (2, 0): 9.0})
    result = compare_folds(ours, theirs, n_tracks=30)["rmse_valence"]
    assert result["n"] == 2  # (1, 0) and (2, 0) have no partner
    assert result["mean"] == pytest.approx((0.2 + 0.1) / 2)
    assert result["test_train_ratio"] == pytest.approx(10 / 20)
