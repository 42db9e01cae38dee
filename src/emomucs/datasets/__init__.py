"""Kedro datasets for the artifacts kedro-datasets has no type for."""

from .audio_folder_dataset import AudioFolderDataset
from .audio_set_dataset import AudioSetDataset

__all__ = ["AudioFolderDataset", "AudioSetDataset"]
