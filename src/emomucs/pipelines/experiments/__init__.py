"""Experiments: nested cross-validation of every model variant."""

from .pipeline import (
    contribution_namespaces,
    create_baselines_pipeline,
    create_combinations_pipeline,
    create_emomucs_pipeline,
    create_pipeline,
    create_pipelines,
    create_sources_pipeline,
    variant_namespaces,
)

__all__ = [
    "contribution_namespaces",
    "create_baselines_pipeline",
    "create_combinations_pipeline",
    "create_emomucs_pipeline",
    "create_pipeline",
    "create_pipelines",
    "create_sources_pipeline",
    "variant_namespaces",
]
