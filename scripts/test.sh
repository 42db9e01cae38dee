#!/usr/bin/env bash
# Install emomucs with its test dependencies, lint, and run the test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
EXTRAS="[test]" . scripts/setup_env.sh
ruff check src tests benchmarks
ruff format --check src tests benchmarks
python -m pytest -q "$@"
