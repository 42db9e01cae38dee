"""Experiments: nested cross-validation of every model variant."""

from .pipeline import (
    create_baselines_pipeline,
    create_combinations_pipeline,
    create_emomucs_pipeline,
    create_pipeline,
    create_pipelines,
    create_sources_pipeline,
    variant_namespaces,
)

__all__ = [
    "create_baselines_pipeline",
    "create_combinations_pipeline",
    "create_emomucs_pipeline",
    "create_pipeline",
    "create_pipelines",
    "create_sources_pipeline",
    "variant_namespaces",
]
