"""Explaining trained models: what each source contributes to a prediction.

Plain library code (no Kedro): the experiments pipeline wraps it in a node.
"""

from emomucs.interpret.contributions import (
    ALL_REPEATS,
    METHODS,
    ContributionOptions,
    collect_contribution_summaries,
    rank_sources,
    shapley_values,
    silence_features,
    source_contributions,
    summary_ranking,
)

__all__ = [
    "ALL_REPEATS",
    "METHODS",
    "ContributionOptions",
    "collect_contribution_summaries",
    "rank_sources",
    "shapley_values",
    "silence_features",
    "source_contributions",
    "summary_ranking",
]
