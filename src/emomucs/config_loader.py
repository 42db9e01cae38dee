"""The project's config loader: Kedro's OmegaConfigLoader plus the experiment grid.

Each variant's ``<group>.<name>.experiment`` parameters are generated from the grid
declared in :mod:`emomucs.pipelines.experiments.variants` (where the pipelines come
from, as Kedro builds them before it reads any configuration). What the
configuration says (``conf/base``, an environment, ``--params``) is merged over
them key by key, so ``experiments.yml`` only names what differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kedro.config import OmegaConfigLoader


def merge_over(defaults: Mapping[str, Any], config: Mapping[str, Any]) -> dict:
    """``config`` merged over ``defaults``: nested mappings key by key, anything
    else replaced."""
    merged = dict(defaults)
    for key, value in config.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_over(merged[key], value)
        else:
            merged[key] = value
    return merged


class ConfigLoader(OmegaConfigLoader):
    """OmegaConfigLoader whose ``parameters`` include the experiment grid's
    settings (:func:`~emomucs.pipelines.experiments.variants.grid_parameters`)
    under the configured ones."""

    def __getitem__(self, key: str) -> dict[str, Any]:
        config = super().__getitem__(key)
        if key != "parameters":
            return config
        # imported here: the grid imports torch, which settings.py need not
        from emomucs.pipelines.experiments.variants import grid_parameters

        return merge_over(grid_parameters(), config)
