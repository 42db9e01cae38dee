"""A JSON file that may be absent: it then loads as an empty dict."""

from __future__ import annotations

from typing import Any

from kedro_datasets.json import JSONDataset


class OptionalJSONDataset(JSONDataset):
    """kedro-datasets' ``JSONDataset``, loading ``{}`` when the file does not exist.

    For inputs that only some corpora have (the synthetic corpus' ``ceiling.json``
    under the dataset root): a node then says what is missing instead of the run
    failing, and never reads another corpus' file in its place.
    """

    def load(self) -> Any:
        if not self._exists():
            return {}
        return super().load()
