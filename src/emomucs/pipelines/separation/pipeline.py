"""Wires the separation nodes: true stems, separated stems, mix, and their SDR."""

from kedro.pipeline import Node, Pipeline, node, pipeline

from .nodes import cut_oracle_stems, downmix_clips, score_separation, separate_sources

OTHER_SEPARATORS = ("hpss",)
"""Namespaces of separators beside ``separation.separator``, each with its
``<namespace>.separator`` parameters and its own ``<namespace>.stems``
(:func:`create_other_separator_pipeline`): ``hpss``, the harmonic–percussive split."""


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                cut_oracle_stems,
                inputs=["clips", "clip_table", "oracle_stems", "params:separation"],
                outputs="oracle_clip_stems",
                name="cut_oracle_stems",
            ),
            node(
                separate_sources,
                inputs=["clips", "oracle_clip_stems", "params:separation"],
                outputs="stems",
                name="separate_sources",
            ),
            node(
                downmix_clips,
                inputs=["clips", "params:separation"],
                outputs="mix",
                name="downmix_clips",
            ),
            node(
                score_separation,
                inputs=["stems", "mix", "oracle_clip_stems", "params:separation"],
                outputs="separation_sdr",
                name="score_separation",
            ),
        ]
    )


def create_other_separator_pipeline(namespace: str) -> Pipeline:
    """Another separator's stems and their feature sets, in its own namespace.

    ``<namespace>.stems`` are the clips separated by the separator the parameters
    ``<namespace>.separator`` name (e.g. ``hpss``: the harmonic–percussive split),
    the other ``separation`` options shared; ``<namespace>.stems_<representation>``
    are their feature sets. They never meet the main separator's stems: they are
    other datasets, and the stems cache keys each track by the separator's
    identity. Experiments take the nodes of the sets they read.
    """
    # Imported here: the features stage imports training code this stage does not need.
    from emomucs.pipelines.features import create_stems_pipeline

    separate = Pipeline(
        [
            Node(
                separate_sources,
                ["clips", "oracle_clip_stems", "params:separation", "params:separator"],
                "stems",
                name="separate_sources",
            )
        ]
    )
    return pipeline(
        separate + create_stems_pipeline(),
        namespace=namespace,
        inputs={"clips", "oracle_clip_stems"},
        parameters={"params:separation", "params:features"},
    )
