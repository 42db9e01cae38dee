"""Project settings: configuration layout and environments.

``conf/base`` holds the fast offline defaults, ``conf/paper`` the paper's settings
(``kedro run --env paper``), ``conf/local`` what is personal to a machine.
"""

from emomucs.config_loader import ConfigLoader
from emomucs.hooks import (
    MarkKilledRunsHook,
    MlflowVariantRunsHook,
    ValidateParametersHook,
)

# Parameters are checked against their schema first (a misspelt key fails the run);
# kedro-mlflow opens one MLflow run per `kedro run`: runs a killed process left
# RUNNING are marked KILLED, and the run gets its identity tags, its artifacts and a
# child run per variant.
HOOKS = (ValidateParametersHook(), MarkKilledRunsHook(), MlflowVariantRunsHook())

# OmegaConfigLoader, plus each experiment variant's settings generated from the grid
# (emomucs.pipelines.experiments.variants) under the configured parameters.
CONFIG_LOADER_CLASS = ConfigLoader
# Parameters merge softly: an environment (paper, benchmark) overrides only the keys it
# names. With Kedro's default destructive merge, `--params separation.separator.kind=x`
# under an environment without a `separation` block replaced base's whole block.
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft"},
}
