"""Settings chosen on validation: of the runs a suite trains as alternatives to one another
(:class:`fedskip.bench.spec.Candidate`: labels ``candidate`` and ``candidate_for``), the
reports keep, per configuration and seed, the one with the best validation score.

The winner stands in for the configuration's run under that run's name, groups and labels
(so seeds, gaps and claims read it like any other run); the others are listed with their
validation and test scores, never used. The choice reads ``best_val`` of ``summary.json``
(the primary metric on the validation split at the chosen epoch / round), never the test set;
a tie keeps the configuration's own run. A run without a validation score loses to any run
with one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fedskip.bench.records import RunRecord


@dataclass(frozen=True)
class Option:
    """One candidate run of a choice: its run name, candidate label and scores (0..1)."""

    run: str
    label: str
    val: float | None
    test: float | None


@dataclass(frozen=True)
class Choice:
    """The runs that competed for configuration run ``config`` and the one that won."""

    config: str
    options: tuple[Option, ...]
    chosen: str


def choose_on_validation(
    records: Sequence[RunRecord], labels: Mapping[str, Mapping[str, Any]]
) -> tuple[list[RunRecord], list[Choice]]:
    """``records`` with each set of alternatives replaced by its winner (in the place of the
    configuration's own run, or of its first alternative when that has not run), and the
    choices made. Records that are nobody's alternative pass through unchanged."""
    competing: dict[str, list[RunRecord]] = {}
    for record in records:
        label = labels.get(record.name, {})
        if "candidate" in label:
            competing.setdefault(str(label.get("candidate_for", record.name)), []).append(record)
    out: list[RunRecord] = []
    choices: list[Choice] = []
    placed: set[str] = set()
    for record in records:
        label = labels.get(record.name, {})
        if "candidate" not in label:
            out.append(record)
            continue
        config = str(label.get("candidate_for", record.name))
        if config in placed:
            continue
        placed.add(config)
        group = competing[config]
        winner = max(group, key=lambda r: (_val(r) is not None, _val(r) or 0.0, r.name == config))
        if len(group) == 1 and winner.name == config:
            out.append(winner)
            continue
        options = tuple(
            Option(r.name, str(labels[r.name]["candidate"]), _val(r), _test(r)) for r in group
        )
        choices.append(Choice(config, options, winner.name))
        out.append(
            dataclasses.replace(
                winner, shown_as=config, candidate=str(labels[winner.name]["candidate"])
            )
        )
    return out, choices


def _val(record: RunRecord) -> float | None:
    return record.summary.number("best_val")


def _test(record: RunRecord) -> float | None:
    chosen = record.summary.number("test_at_best")
    return chosen if chosen is not None else record.final


def choices_markdown(choices: Sequence[Choice]) -> list[str]:
    """The "Chosen on validation" section of ``results.md`` (empty without choices)."""
    if not choices:
        return []
    lines = [
        "## Chosen on validation",
        "",
        "Runs trained as alternatives to one another (each with another setting); per "
        "configuration and seed the one with the best validation score (`val`, at its chosen "
        "round / epoch) stands in the tables above under the configuration's name. Test scores "
        "are shown, not used.",
        "",
        "| configuration | candidate (run) | val | test | chosen |",
        "|---|---|---|---|---|",
    ]
    for choice in choices:
        for option in choice.options:
            mark = "yes" if option.run == choice.chosen else ""
            lines.append(
                f"| {choice.config} | {option.label} (`{option.run}`) | {_fmt(option.val)} | "
                f"{_fmt(option.test)} | {mark} |"
            )
    return [*lines, ""]


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
