"""Project settings: configuration layout and environments.

``conf/base`` holds the fast offline defaults, ``conf/paper`` the paper's settings
(``kedro run --env paper``), ``conf/local`` what is personal to a machine.
"""

from kedro.config import OmegaConfigLoader

from emomucs.hooks import MlflowVariantRunsHook

# kedro-mlflow opens one MLflow run per `kedro run`; this adds a child run per variant.
HOOKS = (MlflowVariantRunsHook(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
