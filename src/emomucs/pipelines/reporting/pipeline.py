"""Reporting: the results table of whichever variants have run."""

from __future__ import annotations

from collections.abc import Sequence

from kedro.pipeline import Node, Pipeline

from .nodes import tabulate_paper_results, tabulate_results


def create_reporting_pipeline(variants: Sequence[str] = ()) -> Pipeline:
    """Tabulate the stored summaries (``cv_summaries``) of every variant run so far.

    Args:
        variants: Namespaces run in the same ``kedro run``; their ``cv_summary``
            become inputs too (keyword arguments named by the namespace), so the
            table is built after them. Leave empty to
            tabulate stored results only.
    """
    return Pipeline(
        [
            Node(
                tabulate_results,
                {
                    "cv_summaries": "cv_summaries",
                    **{v: f"{v}.cv_summary" for v in variants},
                },
                ["results_table", "results_markdown", "results_differences"],
                name="tabulate_results",
            ),
            Node(
                tabulate_paper_results,
                None,
                "paper_results",
                name="tabulate_paper_results",
            ),
        ]
    )


def create_pipeline(**kwargs) -> Pipeline:
    """The table of stored results, for ``kedro run --pipeline=reporting``."""
    return create_reporting_pipeline()
