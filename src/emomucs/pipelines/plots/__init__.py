"""Plots: figures of the corpus, the separator and every trained variant."""

from .pipeline import (
    create_contributions_overview_pipeline,
    create_corpus_plots_pipeline,
    create_experiment_plots_pipeline,
    create_pipeline,
    create_results_plots_pipeline,
    create_separation_plots_pipeline,
    create_separator_training_plots_pipeline,
    create_variant_plots_pipeline,
)

__all__ = [
    "create_contributions_overview_pipeline",
    "create_corpus_plots_pipeline",
    "create_experiment_plots_pipeline",
    "create_pipeline",
    "create_results_plots_pipeline",
    "create_separation_plots_pipeline",
    "create_separator_training_plots_pipeline",
    "create_variant_plots_pipeline",
]
