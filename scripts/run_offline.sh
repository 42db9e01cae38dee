#!/usr/bin/env bash
# Install emomucs and run the main job offline: synthetic PMEmo-format corpus →
# compact Demucs separator (shipped in data/06_models/separator; trained if missing) → EmoMucs late fusion with nested CV → results table.
# Steps whose outputs already exist are not redone; every `kedro run` is tracked in MLflow.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/setup_env.sh
if [ ! -f data/01_raw/synthetic/PMEmo2019/metadata.csv ]; then
  kedro run --pipeline=synthetic_corpus
fi
if ! ls data/06_models/separator/*.th >/dev/null 2>&1; then
  kedro run --pipeline=separator_training
fi
kedro run --pipeline="${PIPELINE:-emomucs_late}" "$@"
echo "Results: data/08_reporting/results_table.md/<latest timestamp>/, MLflow: mlflow ui --backend-store-uri sqlite:///mlflow.db"
