"""The run's parameters are checked against their schema before anything runs."""

from __future__ import annotations

from kedro.framework.hooks import hook_impl

from emomucs.parameters import validate_parameters


class ValidateParametersHook:
    """Checks the run's parameters (conf and ``--params``) before anything runs:
    a misspelt key fails the run (:func:`emomucs.parameters.validate_parameters`)."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        validate_parameters(context.params)
