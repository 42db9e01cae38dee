import numpy as np
import pandas as pd
from sklearn.metrics import mean_squared_error, r2_score

from emomucs.training.metrics import r2, rmse, summarise_folds


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
    assert (table.loc["fold", "repeat"] == 0).all()


def test_fold_summary_over_repeats():
    """Rows per (repeat, outer fold); mean and sd over them; pooled per repeat,
    averaged over repeats."""
    rng = np.random.default_rng(2)
    parts = []
    for repeat in (0, 1):
        part = pd.DataFrame(
            {
                "musicId": range(20),
                "repeat": repeat,
                "outer_fold": np.repeat([0, 1], 10),
                "valence": rng.uniform(-1, 1, 20),
                "arousal": rng.uniform(-1, 1, 20),
            }
        )
        part["valence_pred"] = part["valence"] + rng.normal(0, 0.2 + repeat, 20)
        part["arousal_pred"] = part["arousal"] * 0.5
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    table = summarise_folds(frame)
    folds = table[table["scope"] == "fold"]
    assert list(zip(folds["repeat"], folds["outer_fold"])) == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
    ]
    assert (folds["n_tracks"] == 10).all()
    summary = table.set_index("scope")
    assert np.isclose(summary.loc["mean", "r2_valence"], folds["r2_valence"].mean())
    assert np.isclose(summary.loc["sd", "r2_valence"], folds["r2_valence"].std(ddof=1))
    pooled = [r2_score(p["valence"], p["valence_pred"]) for p in parts]
    assert np.isclose(summary.loc["pooled", "r2_valence"], np.mean(pooled))
    assert summary.loc["pooled", "n_tracks"] == 20
