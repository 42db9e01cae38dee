"""Errors a user fixes in the data or the settings, not in the code.

``kedro run`` (see :mod:`emomucs.cli`) prints these as one message and exits non-zero,
without a traceback: the message names what is wrong and where.
"""

from __future__ import annotations


class DatasetInputError(ValueError):
    """The dataset, or the settings applied to it, cannot be used as given.

    Raised for dataset-level failures: a required file or column is missing, too few
    tracks survive the checks, the cross-validation settings need more tracks than
    the dataset has.
    """


class SettingsError(ValueError):
    """A parameter that is not a setting (misspelt, or of another group) or a value of
    the wrong type; the message names the key, its group and the closest valid name."""
