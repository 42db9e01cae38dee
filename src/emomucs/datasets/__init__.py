"""Kedro datasets for the artifacts kedro-datasets has no type for."""

from .audio_folder_dataset import AudioFolderDataset
from .audio_set_dataset import AudioSetDataset
from .demucs_repo_dataset import DemucsRepoDataset
from .optional_json_dataset import OptionalJSONDataset
from .results_store_dataset import ResultsStoreDataset
from .summary_dataset import SummaryDataset
from .torch_dataset import TorchDataset

__all__ = [
    "AudioFolderDataset",
    "AudioSetDataset",
    "DemucsRepoDataset",
    "OptionalJSONDataset",
    "ResultsStoreDataset",
    "SummaryDataset",
    "TorchDataset",
]
