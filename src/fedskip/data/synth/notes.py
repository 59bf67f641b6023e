"""Clinical notes as lines of segments: i2b2-style discharge summaries and progress notes.

The same builders feed the NER corpus (written one sentence per line, whitespace-tokenised) and
the discharge summaries of the MIMIC-style classification corpus (rendered as natural text).
"""

from __future__ import annotations

from fedskip.data.synth.context_templates import AMBIGUOUS, INTROS, MORE_AMBIGUOUS, NEUTRAL, TAILS
from fedskip.data.synth.slots import render
from fedskip.data.synth.templates import HEADERS, SECTIONS
from fedskip.data.synth.text import Line, NoteContext, Seg, apply_casing, date_text

SERVICES_BY_SPECIALTY: dict[str, tuple[str, ...]] = {
    "cardiology": ("cardiology", "medicine", "ccu", "cardiac surgery"),
    "oncology": ("oncology", "hematology / oncology", "medicine", "bone marrow transplant"),
    "icu": ("micu", "medicine", "sicu", "trauma sicu"),
    "general medicine": ("medicine", "general medicine", "family medicine"),
    "nephrology": ("nephrology", "medicine", "transplant"),
    "neurology": ("neurology", "neurosurgery", "medicine"),
    "gastroenterology": ("hepatology", "gastroenterology", "medicine", "general surgery"),
}

SUMMARY_SECTIONS: tuple[tuple[str, float, int, int], ...] = (
    # (section, probability it is present, min lines, max lines)
    ("cc", 0.8, 1, 1),
    ("hpi", 1.0, 3, 7),
    ("pmh", 0.9, 2, 6),
    ("meds", 0.7, 2, 7),
    ("allergies", 0.8, 1, 1),
    ("social", 0.6, 1, 2),
    ("family", 0.45, 1, 2),
    ("exam", 0.8, 3, 7),
    ("labs", 0.8, 2, 6),
    ("course", 1.0, 5, 13),
    ("dc_meds", 0.75, 2, 8),
    ("dc_dx", 0.9, 1, 4),
    ("condition", 0.6, 1, 2),
    ("instructions", 0.6, 2, 4),
    ("followup", 0.6, 1, 3),
)
PROGRESS_SECTIONS: tuple[tuple[str, float, int, int], ...] = (
    ("subjective", 1.0, 1, 3),
    ("objective", 1.0, 2, 4),
    ("labs", 0.5, 1, 3),
    ("assessment", 1.0, 4, 10),
)
LIST_SECTIONS = ("pmh", "meds", "dc_meds", "dc_dx")
INLINE_SECTIONS = ("cc", "allergies", "condition")
AMBIGUOUS_SHARE = {"course": 0.4, "assessment": 0.3, "hpi": 0.12, "labs": 0.1}
"""Chance that a line of the section comes from the context-dependent templates."""
NEUTRAL_SHARE = {"course": 0.2, "assessment": 0.35, "pmh": 0.15, "dc_dx": 0.15, "labs": 0.08}
"""Chance (scaled by the site's terseness) of a line whose context does not tell the type."""
SENTENCE_SECTIONS = ("hpi", "course", "subjective", "assessment", "instructions")
CONTEXT_DEPENDENT = AMBIGUOUS + MORE_AMBIGUOUS


def _template(ctx: NoteContext, section: str) -> str:
    """A template for one line of ``section`` in the site's style."""
    share = AMBIGUOUS_SHARE.get(section, 0.0)
    if share and ctx.chance(share):
        template = ctx.rng.choice(CONTEXT_DEPENDENT)
    elif ctx.chance(NEUTRAL_SHARE.get(section, 0.0) * (0.5 + ctx.profile.terse)):
        return ctx.rng.choice(NEUTRAL)
    elif section in ("course", "hpi") and ctx.chance(ctx.profile.terse * 0.5):
        template = ctx.rng.choice(SECTIONS["assessment"])
    else:
        template = ctx.rng.choice(SECTIONS[section])
    return _frame(ctx, template) if section in SENTENCE_SECTIONS else template


def _frame(ctx: NoteContext, template: str) -> str:
    """Add an opening (``of note ,``) and/or a trailing clause to a sentence template."""
    if not template.startswith(("#", "-")) and ctx.chance(0.25):
        template = f"{ctx.rng.choice(INTROS)} {template}"
    if ctx.chance(0.25):
        tail = ctx.rng.choice(TAILS)
        template = f"{template[:-2]} {tail} ." if template.endswith(" .") else f"{template} {tail}"
    return template


def _header(ctx: NoteContext, section: str) -> Line:
    return apply_casing(ctx.profile, [Seg(ctx.rng.choice(HEADERS[section]))], header=True)


def section_lines(ctx: NoteContext, section: str, n_lines: int) -> list[Line]:
    """The header line and ``n_lines`` body lines of one section.

    A discharge-diagnosis section of a note with coded diagnoses (``ctx.forced``) lists exactly
    those diagnoses, as the coders of a real admission read them.
    """
    header = _header(ctx, section)
    marker = ctx.rng.choice(("number", "dash", "none")) if section in LIST_SECTIONS else "none"
    body: list[Line] = []
    coded = section == "dc_dx" and bool(ctx.forced)
    for i in range(len(ctx.forced) if coded else n_lines):
        template = f"[problem:{ctx.forced[i]}]" if coded else _template(ctx, section)
        line = apply_casing(ctx.profile, render(ctx, template))
        if marker == "number":
            line.insert(0, Seg(f"{i + 1} ."))
        elif marker == "dash":
            line.insert(0, Seg("-"))
        body.append(line)
    if section in INLINE_SECTIONS and n_lines == 1 and ctx.chance(0.6):
        return [header + body[0]]
    return [header, *body]


def _note(
    ctx: NoteContext, plan: tuple[tuple[str, float, int, int], ...], head: list[Line]
) -> list[Line]:
    lines = list(head)
    for section, p_present, lo, hi in plan:
        if not ctx.chance(p_present):
            continue
        if lines and ctx.profile.blank_between_sections:
            lines.append([])
        lines.extend(section_lines(ctx, section, ctx.rng.randint(lo, hi)))
    return lines


def _admin_lines(ctx: NoteContext, stay_days: int) -> list[Line]:
    service = ctx.rng.choice(SERVICES_BY_SPECIALTY.get(ctx.profile.specialty, ("medicine",)))
    pairs = [
        ("admission date :", date_text(ctx)),
        ("discharge date :", date_text(ctx, stay_days)),
        ("service :", service),
    ]
    if ctx.chance(0.5):
        pairs.insert(2, ("sex :", ctx.sex.lower()))
    lines: list[Line] = []
    for key, value in pairs:
        header = apply_casing(ctx.profile, [Seg(key)], header=True)
        value_line = apply_casing(ctx.profile, [Seg(value)], header=key == "service :")
        lines.extend([header, value_line])
    return lines


def discharge_summary(ctx: NoteContext) -> list[Line]:
    """A discharge summary: admission data, then the sections of ``SUMMARY_SECTIONS``."""
    return _note(ctx, SUMMARY_SECTIONS, _admin_lines(ctx, ctx.rng.randint(2, 14)))


def progress_note(ctx: NoteContext) -> list[Line]:
    """A shorter S/O/A/P progress note."""
    title = ctx.rng.choice(
        (
            "progress note",
            "medicine progress note",
            "icu progress note",
            "interval note",
            "daily progress note",
        )
    )
    head = [
        apply_casing(ctx.profile, [Seg(title)], header=True),
        apply_casing(ctx.profile, [Seg(date_text(ctx, ctx.rng.randint(1, 6)))]),
    ]
    return _note(ctx, PROGRESS_SECTIONS, head)


def clinical_note(ctx: NoteContext) -> list[Line]:
    """What the NER corpus holds: mostly discharge summaries, some progress notes (as i2b2 2010)."""
    return discharge_summary(ctx) if ctx.chance(0.7) else progress_note(ctx)
