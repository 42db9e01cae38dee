"""Kedro datasets for the artifacts kedro-datasets has no type for."""

from .audio_set_dataset import AudioSetDataset

__all__ = ["AudioSetDataset"]
