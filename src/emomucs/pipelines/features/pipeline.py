"""Features: the mix and the stems → log-mel spectrograms and mono waveforms."""

from kedro.pipeline import Node, Pipeline

from .nodes import collect_waveforms, compute_log_mel

FEATURE_SETS = ("mix_log_mel", "stems_log_mel", "mix_waveform", "stems_waveform")


def create_pipeline(**kwargs) -> Pipeline:
    """All four feature sets; experiments take the nodes of the sets they read."""
    return Pipeline(
        [
            Node(
                compute_log_mel,
                ["mix", "params:features"],
                "mix_log_mel",
                name="compute_mix_log_mel",
            ),
            Node(
                compute_log_mel,
                ["stems", "params:features"],
                "stems_log_mel",
                name="compute_stems_log_mel",
            ),
            Node(
                collect_waveforms,
                ["mix", "params:features"],
                "mix_waveform",
                name="collect_mix_waveforms",
            ),
            Node(
                collect_waveforms,
                ["stems", "params:features"],
                "stems_waveform",
                name="collect_stems_waveforms",
            ),
        ]
    )
