"""Wires the separation nodes: true stems, separated stems, mix, and their SDR."""

from kedro.pipeline import Pipeline, node, pipeline

from .nodes import cut_oracle_stems, downmix_clips, score_separation, separate_sources


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
                inputs=["stems", "mix", "oracle_clip_stems"],
                outputs="separation_sdr",
                name="score_separation",
            ),
        ]
    )
