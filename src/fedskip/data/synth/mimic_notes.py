"""MIMIC-III-style notes for the classification corpus, one builder per NOTEEVENTS category.

Each category has its own layout and vocabulary (radiology reports, ECG reads, echo reports,
nursing and physician progress notes, respiratory care notes), but they share clinical terms and
some overlap on purpose (nursing vs. nursing/other vs. physician notes), so the category label is
learnable without being trivial. Discharge summaries reuse :func:`notes.discharge_summary`.
"""

from __future__ import annotations

import re

from fedskip.data.synth.datafiles import load, strings
from fedskip.data.synth.notes import discharge_summary
from fedskip.data.synth.slots import render
from fedskip.data.synth.text import Line, NoteContext, Seg, apply_casing

_M = load("mimic.json")
RADIOLOGY_EXAMS = strings(_M["radiology_exams"])
RADIOLOGY_FINDINGS = strings(_M["radiology_findings"])
RADIOLOGY_IMPRESSIONS = strings(_M["radiology_impressions"])
ECG_FINDINGS = strings(_M["ecg_findings"])
ECG_CLOSINGS = strings(_M["ecg_closings"])
ECHO_LINES = strings(_M["echo_lines"])
NURSING_LINES = strings(_M["nursing_lines"])
PHYSICIAN_LINES = strings(_M["physician_lines"])
RESPIRATORY_LINES = strings(_M["respiratory_lines"])


def _lines(ctx: NoteContext, templates: tuple[str, ...], lo: int, hi: int) -> list[Line]:
    """Between ``lo`` and ``hi`` lines from distinct templates, in template order."""
    n = min(ctx.rng.randint(lo, hi), len(templates))
    picked = sorted(ctx.rng.sample(range(len(templates)), n))
    return [render(ctx, templates[i]) for i in picked]


def radiology(ctx: NoteContext) -> tuple[str, list[Line]]:
    exam = ctx.rng.choice(RADIOLOGY_EXAMS)
    head: list[Line] = [
        [
            Seg(
                exam
                + "   clip # [**clip number (radiology) "
                + str(ctx.rng.randint(1000, 99999))
                + "**]"
            )
        ],
        render(ctx, "reason : {P}"),
        [Seg("_" * 78)],
        [Seg("final report")],
        render(ctx, "indication : {age} year old {sexw} with {P} , evaluate for {P} ."),
        render(ctx, "comparison : {date:-20} ."),
    ]
    body = [
        [Seg("findings :")],
        *_lines(ctx, RADIOLOGY_FINDINGS, 2, 6),
        [Seg("impression :")],
        *_lines(ctx, RADIOLOGY_IMPRESSIONS, 1, 3),
    ]
    return exam, head + body


def ecg(ctx: NoteContext) -> tuple[str, list[Line]]:
    picks = ctx.rng.sample(ECG_FINDINGS, ctx.rng.randint(1, 4))
    lines: list[Line] = [[Seg(p + " .")] for p in picks]
    return "Report", lines + _lines(ctx, ECG_CLOSINGS, 1, 2)


def echo(ctx: NoteContext) -> tuple[str, list[Line]]:
    head = [
        [Seg("patient/test information :")],
        render(ctx, "indication : {P:cardio} ."),
        [Seg(f"height : ( in ) {ctx.rng.randint(58, 76)}")],
        [Seg(f"weight ( lb ) : {ctx.rng.randint(98, 310)}")],
        [Seg(f"bp ( mm hg ) : {ctx.rng.randint(90, 180)}/{ctx.rng.randint(50, 100)}")],
        [Seg("status : inpatient")],
        [Seg("test : tte ( complete )")],
        [Seg("interpretation :")],
        [Seg("findings :")],
    ]
    return "Report", head + _lines(ctx, ECHO_LINES, 3, 8)


def nursing(ctx: NoteContext, *, other: bool) -> tuple[str, list[Line]]:
    if other:
        title = ctx.rng.choice(
            ("npn 7p-7a", "npn 7a-7p", "nursing note", "micu nursing progress note")
        )
        return "Report", [[Seg(title)], *_lines(ctx, NURSING_LINES, 3, 7)]
    title = ctx.rng.choice(
        ("Nursing Progress Note", "Nursing Transfer Note", "Nursing Admission Note")
    )
    lines = [render(ctx, "{age} yo {sex} admitted with {P} , {P} .")] + _lines(
        ctx, NURSING_LINES, 5, 11
    )
    return title, lines


def physician(ctx: NoteContext) -> tuple[str, list[Line]]:
    title = ctx.rng.choice(
        (
            "Physician Resident Progress Note",
            "Intensivist Note",
            "Physician Attending Admission Note",
            "Physician Resident Admission Note",
        )
    )
    lines = _lines(ctx, PHYSICIAN_LINES, 12, len(PHYSICIAN_LINES))
    return title, lines + _lines(ctx, NURSING_LINES, 0, 2)


def respiratory(ctx: NoteContext) -> tuple[str, list[Line]]:
    title = ctx.rng.choice(("Respiratory Care Shift Note", "Respiratory Care"))
    return title, _lines(ctx, RESPIRATORY_LINES, 3, 7)


def category_note(ctx: NoteContext, category: str) -> tuple[str, list[Line]]:
    """``(DESCRIPTION, lines)`` of a note of MIMIC-III ``category``, in the site's casing."""
    if category == "Discharge summary":
        return "Report", discharge_summary(ctx)
    description, lines = _category_lines(ctx, category)
    return description, [apply_casing(ctx.profile, line) for line in lines]


def _category_lines(ctx: NoteContext, category: str) -> tuple[str, list[Line]]:
    if category == "Discharge summary":
        return "Report", discharge_summary(ctx)
    if category == "Radiology":
        return radiology(ctx)
    if category == "ECG":
        return ecg(ctx)
    if category == "Echo":
        return echo(ctx)
    if category in ("Nursing", "Nursing/other"):
        return nursing(ctx, other=category == "Nursing/other")
    if category == "Physician ":
        return physician(ctx)
    if category == "Respiratory ":
        return respiratory(ctx)
    raise ValueError(f"unknown note category {category!r}")


_SPACE_BEFORE = re.compile(r" ([,.;:)\]%])")
_SPACE_AFTER = re.compile(r"([(\[]) ")


def natural_text(lines: list[Line]) -> str:
    """Lines of segments as MIMIC-like prose: punctuation attached, one line per sentence."""
    out = []
    for line in lines:
        text = " ".join(seg.text for seg in line)
        text = _SPACE_AFTER.sub(r"\1", _SPACE_BEFORE.sub(r"\1", text))
        out.append(text.replace("[** ", "[**").replace(" **]", "**]"))
    return "\n".join(out) + "\n"
