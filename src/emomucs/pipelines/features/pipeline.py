"""Features: the mix and the stems → log-mel spectrograms, chromagrams, constant-Q
spectrograms and mono waveforms."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    collect_waveforms,
    compute_chroma,
    compute_constant_q,
    compute_log_mel,
)

COMPUTE = {
    "log_mel": (compute_log_mel, "compute_{audio}_log_mel"),
    "chroma": (compute_chroma, "compute_{audio}_chroma"),
    "cqt": (compute_constant_q, "compute_{audio}_cqt"),
    "waveform": (collect_waveforms, "collect_{audio}_waveforms"),
}
"""Representation -> its node function and node name."""

FEATURE_SETS = tuple(
    f"{audio}_{representation}"
    for representation in COMPUTE
    for audio in ("mix", "stems")
)


def create_pipeline(**kwargs) -> Pipeline:
    """Every feature set of the mix and the stems; experiments take the nodes of
    the sets they read."""
    return Pipeline(
        [
            Node(
                function,
                [audio, "params:features"],
                f"{audio}_{representation}",
                name=name.format(audio=audio),
            )
            for representation, (function, name) in COMPUTE.items()
            for audio in ("mix", "stems")
        ]
    )


def create_stems_pipeline() -> Pipeline:
    """The feature sets of the stems alone (for another separator's namespace)."""
    return create_pipeline().only_nodes_with_inputs("stems")
