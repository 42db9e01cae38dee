"""Project pipelines, registered by the names users run.

Every experiment pipeline includes what it needs upstream: ingestion, clipping,
separation (only where it reads stems: the baselines read the mix), features, the shared folds, the single-source models that finetune and
freeze start from, then the results table and figures. Two pipelines stay separate
because they write inputs that Kedro cannot see being read: ``synthetic_corpus``
(the files under the dataset root) and ``separator_training`` (the local Demucs repo).
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from emomucs.pipelines import (
    clipping,
    experiments,
    features,
    ingestion,
    plots,
    predict,
    reference,
    reporting,
    separation,
    separator_training,
    synthetic_corpus,
)
from emomucs.pipelines.experiments.pipeline import (
    contribution_namespaces,
    variant_namespaces,
)


def _with_data_and_reports(
    experiment: Pipeline, upstream: Pipeline, with_reference: bool
) -> Pipeline:
    """An experiment pipeline with its upstream stages, results table and figures.

    With ``with_reference`` (experiments on the stems) the run also fits the
    reference regressor on the same folds and stems, the bar the results table
    shows beside each variant: seconds beside the networks' training.
    """
    variants = variant_namespaces(experiment)
    contributions = contribution_namespaces(experiment)
    bar = reference.create_pipeline() if with_reference else Pipeline([])
    return (
        upstream
        + experiment
        + bar
        + reporting.create_reporting_pipeline(variants, contributions, with_reference)
        + plots.create_experiment_plots_pipeline(variants, contributions)
    )


def _upstream_of(experiment: Pipeline, data: Pipeline, separated: Pipeline) -> Pipeline:
    """The data and separation stages an experiment reads from.

    Experiments on the stems get the whole separation stage (with its SDR report and
    figure); those on the mix alone (the baselines) get ingestion, clipping and the
    down-mix, and no clip is separated.
    """
    stages = data + separation.create_pipeline()
    wanted = sorted(experiment.inputs() & stages.all_outputs())
    needed = stages.to_outputs(*wanted) if wanted else Pipeline([])
    if any(node.name == "separate_sources" for node in needed.nodes):
        return separated
    return data + needed + plots.create_corpus_plots_pipeline()


def register_pipelines() -> dict[str, Pipeline]:
    """Map pipeline names to pipelines."""
    data = ingestion.create_pipeline() + clipping.create_pipeline()
    separated = (
        data
        + separation.create_pipeline()
        + plots.create_corpus_plots_pipeline()
        + plots.create_separation_plots_pipeline()
    )
    pipelines: dict[str, Pipeline] = {
        "synthetic_corpus": synthetic_corpus.create_pipeline(),
        "separator_training": separator_training.create_pipeline()
        + plots.create_separator_training_plots_pipeline(),
        "ingestion": ingestion.create_pipeline(),
        "clipping": clipping.create_pipeline(),
        "data": data,
        "separation": separated,
        "features": separated + features.create_pipeline(),
        "reference": separated + reference.create_pipeline(),
        "reporting": reporting.create_pipeline(),
        "predict": predict.create_pipeline(),
        "plots": plots.create_pipeline(),
    }
    for name, experiment in experiments.create_pipelines().items():
        upstream = _upstream_of(experiment, data, separated)
        pipelines[name] = _with_data_and_reports(
            experiment, upstream, with_reference=upstream is separated
        )
    pipelines["__default__"] = pipelines["emomucs_late"]
    return pipelines
