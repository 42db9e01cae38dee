"""Project pipelines, registered by the names users run."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from emomucs.pipelines import clipping, ingestion, synthetic_corpus


def register_pipelines() -> dict[str, Pipeline]:
    """Map pipeline names to pipelines; each includes the stages it needs upstream."""
    data = ingestion.create_pipeline() + clipping.create_pipeline()
    pipelines: dict[str, Pipeline] = {
        "ingestion": ingestion.create_pipeline(),
        "clipping": clipping.create_pipeline(),
        "data": data,
        # Writes the default corpus; kept out of every other pipeline (and __default__)
        # because Kedro cannot see that ingestion reads the files it writes.
        "synthetic_corpus": synthetic_corpus.create_pipeline(),
    }
    pipelines["__default__"] = data
    return pipelines
