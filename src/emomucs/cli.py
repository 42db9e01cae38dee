"""Project commands: ``kedro run`` as Kedro's, with input errors as one clear message.

Kedro lets a project's ``cli.py`` override a built-in command. This ``run`` takes the
same options as Kedro's and runs it unchanged; only when the run fails on the input
(a :class:`~emomucs.errors.DatasetInputError`, a misspelt setting
(:class:`~emomucs.errors.SettingsError`), a separator that cannot be loaded, or a
dataset that cannot be read) does it print the message alone, ``Error: ...``, and exit
with status 1 instead of a traceback. ``kedro run --verbose`` keeps the traceback.
Any other exception (a bug) propagates with its traceback, as in Kedro.
"""

from __future__ import annotations

from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.io import DatasetError

from emomucs.errors import DatasetInputError, SettingsError
from emomucs.separation import SeparatorUnavailableError

INPUT_ERRORS = (DatasetInputError, SeparatorUnavailableError, SettingsError)
"""Failures whose message says what to fix in the data or the settings."""

_LOAD_FAILED = "Failed while loading data from dataset"
"""How Kedro's DatasetError starts when a dataset cannot be read."""


def input_error(error: BaseException) -> BaseException | None:
    """The input error in ``error``'s chain of causes, or None if there is none."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, INPUT_ERRORS):
            return current
        if isinstance(current, DatasetError) and str(current).startswith(_LOAD_FAILED):
            return current
        current = current.__cause__ or current.__context__
    return None


@click.group(name="emomucs")
def cli() -> None:
    """emomucs' project commands (they override Kedro's of the same name)."""


@cli.command(
    name="run",
    params=[
        *kedro_run.params,
        click.Option(
            ["--verbose", "-v"],
            is_flag=True,
            help="Show the traceback of an input error too.",
        ),
    ],
    help=kedro_run.help,
)
def run(verbose: bool, **kwargs: Any) -> dict[str, Any]:
    """Kedro's ``run``; an input error ends it with its message, not a traceback."""
    try:
        return kedro_run.callback(**kwargs)
    except Exception as error:
        cause = input_error(error)
        if cause is None or verbose:
            raise
        raise click.ClickException(str(cause)) from None


@cli.command(
    name="prune",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def prune(args: tuple[str, ...]) -> None:
    """``python -m emomucs.prune``: list (or ``--delete``) old versions and stale
    stems-cache entries; ``kedro prune --help`` shows its options."""
    from emomucs.prune import main as prune_main

    raise SystemExit(prune_main(list(args)))


@cli.command(name="predict")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option(
    "--variant",
    help="Trained variant of this project (its newest cv_models), e.g. "
    "emomucs_late.c1d_full; default: predict.variant.",
)
@click.option(
    "--run",
    "run_id",
    help="MLflow run id whose predict_model to use instead of the project's files.",
)
@click.option("--windows", is_flag=True, help="Slide the clip over the whole file.")
@click.option("--hop", type=float, help="Window hop in seconds (default: clip length).")
@click.option("--checkpoint", help="One model, r<repeat>o<outer>, not the ensemble.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.option("--env", "-e", help="Kedro configuration environment (with --variant).")
def predict(
    paths: tuple[str, ...],
    variant: str | None,
    run_id: str | None,
    windows: bool,
    hop: float | None,
    checkpoint: str | None,
    output_format: str,
    env: str | None,
) -> None:
    """Valence and arousal of audio files or folders (mp3, wav, flac, ogg) by a
    trained variant's ensemble; see docs/predict.md."""
    from emomucs.predict_cli import run_predict

    raise SystemExit(
        run_predict(
            list(paths), variant, run_id, windows, hop, checkpoint, output_format, env
        )
    )
