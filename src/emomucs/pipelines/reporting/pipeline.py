"""Reporting: the results table of whichever variants have run."""

from __future__ import annotations

from collections.abc import Sequence

from kedro.pipeline import Node, Pipeline

from .nodes import add_contributions_section, tabulate_paper_results, tabulate_results


def create_reporting_pipeline(
    variants: Sequence[str] = (),
    contributions: Sequence[str] | None = None,
    with_reference: bool = False,
) -> Pipeline:
    """Tabulate the stored summaries (``cv_summaries``) of every variant run so far.

    Args:
        variants: Namespaces run in the same ``kedro run``; their ``cv_summary``
            become inputs too (keyword arguments named by the namespace), so the
            table is built after them. Leave empty to
            tabulate stored results only.
        contributions: Namespaces whose source contributions this run computes
            (their summaries become inputs). Given, even empty, the markdown gets
            a section ranking the sources of every variant in
            ``contribution_summaries``; None leaves it out.
        with_reference: The run also fits the reference regressor: its
            ``reference_summary`` becomes an input, so the table is built after it.
    """
    markdown = "results_markdown"
    section = []
    if contributions is not None:
        markdown = "score_tables_markdown"
        section = [_contributions_node(contributions, markdown)]
    return Pipeline(
        [
            Node(
                tabulate_results,
                {
                    "cv_summaries": "cv_summaries",
                    "reference_summaries": "reference_summaries",
                    **(
                        {"fresh_reference": "reference_summary"}
                        if with_reference
                        else {}
                    ),
                    **{v: f"{v}.cv_summary" for v in variants},
                },
                ["results_table", markdown, "results_differences"],
                name="tabulate_results",
            ),
            *section,
            Node(
                tabulate_paper_results,
                None,
                "paper_results",
                name="tabulate_paper_results",
            ),
        ]
    )


def _contributions_node(contributions: Sequence[str], markdown: str) -> Node:
    return Node(
        add_contributions_section,
        [
            markdown,
            "contribution_summaries",
            "corpus_contributions",
            *[f"{v}.contribution_summary" for v in contributions],
        ],
        "results_markdown",
        name="add_contributions_section",
    )


def create_pipeline(**kwargs) -> Pipeline:
    """The table of stored results, for ``kedro run --pipeline=reporting``, with
    the stored source contributions."""
    return create_reporting_pipeline(contributions=())
