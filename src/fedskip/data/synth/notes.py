"""Clinical notes as lines of segments: admission notes, progress notes and discharge summaries.

A patient's notes share one :class:`NoteContext` — sex, age, dates, the admitting problem, past
history and home medications — so an admission note, the progress notes and the discharge
summary of one stay tell one story. The same builders feed the NER corpus (written one sentence
per line, whitespace-tokenised) and the discharge summaries of the MIMIC-style classification
corpus (rendered as natural text).
"""

from __future__ import annotations

from fedskip.data.synth.slots import render, start_patient
from fedskip.data.synth.templates import CONTEXT_DEPENDENT, HEADERS, SECTIONS, TITLES
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

Plan = tuple[tuple[str, float, int, int], ...]
"""(section, probability it is present, min lines, max lines) in note order."""
SUMMARY_SECTIONS: Plan = (
    ("cc", 0.8, 1, 1),
    ("hpi", 1.0, 3, 6),
    ("pmh", 0.9, 2, 6),
    ("meds", 0.7, 2, 7),
    ("allergies", 0.8, 1, 1),
    ("social", 0.5, 1, 2),
    ("family", 0.35, 1, 2),
    ("exam", 0.6, 3, 6),
    ("labs", 0.8, 2, 5),
    ("course", 1.0, 5, 12),
    ("dc_meds", 0.75, 2, 8),
    ("dc_dx", 0.9, 1, 4),
    ("condition", 0.6, 1, 2),
    ("instructions", 0.6, 2, 4),
    ("followup", 0.6, 1, 3),
)
ADMISSION_SECTIONS: Plan = (
    ("cc", 0.9, 1, 1),
    ("hpi", 1.0, 4, 8),
    ("pmh", 0.95, 2, 6),
    ("meds", 0.85, 2, 7),
    ("allergies", 0.9, 1, 1),
    ("social", 0.7, 1, 2),
    ("family", 0.5, 1, 2),
    ("ros", 0.5, 1, 2),
    ("exam", 0.9, 4, 8),
    ("labs", 0.85, 2, 5),
    ("assessment", 1.0, 4, 9),
)
PROGRESS_SECTIONS: Plan = (
    ("subjective", 1.0, 1, 3),
    ("objective", 1.0, 2, 4),
    ("labs", 0.5, 1, 3),
    ("assessment", 1.0, 4, 9),
)
LIST_SECTIONS = ("pmh", "meds", "dc_meds", "dc_dx")
INLINE_SECTIONS = ("cc", "allergies", "condition")
SENTENCE_SECTIONS = ("hpi", "course", "subjective", "assessment", "instructions", "labs")
SUMMARY_LINE = "{age} yo {sex} with {PMHS} , admitted with {aDX} ."
AMBIGUOUS_SHARE = {"course": 0.35, "assessment": 0.2, "hpi": 0.1, "labs": 0.1}
"""Chance that a line of the section comes from the context-dependent templates."""


def _house(ctx: NoteContext, options: tuple[str, ...]) -> str:
    """The site's own variant most of the time (its templates), another one sometimes."""
    if ctx.chance(0.8):
        return options[ctx.profile.house_style % len(options)]
    return ctx.rng.choice(options)


def _template(ctx: NoteContext, section: str) -> str:
    share = AMBIGUOUS_SHARE.get(section, 0.0)
    if share and ctx.chance(share):
        return ctx.rng.choice(CONTEXT_DEPENDENT)
    if section in ("course", "hpi") and ctx.chance(ctx.profile.terse * 0.4):
        return ctx.rng.choice(SECTIONS["assessment"])  # terse sites write telegraphic lines
    return ctx.rng.choice(SECTIONS[section])


def section_lines(ctx: NoteContext, section: str, n_lines: int) -> list[Line]:
    """The header line and ``n_lines`` body lines of one section.

    A discharge-diagnosis section of a note with coded diagnoses (``ctx.forced``) lists exactly
    those diagnoses, as the coders of a real admission read them.
    """
    header = apply_casing(ctx.profile, [Seg(_house(ctx, HEADERS[section]))], header=True)
    marker = ctx.rng.choice(("number", "dash", "none")) if section in LIST_SECTIONS else "none"
    body: list[Line] = []
    coded = section == "dc_dx" and bool(ctx.forced)
    if section in ("pmh", "meds", "dc_meds"):  # each list starts from the patient's first item
        ctx.cursor.pop("pmh" if section == "pmh" else "meds", None)
    ctx.sentence = section in SENTENCE_SECTIONS
    for i in range(len(ctx.forced) if coded else n_lines):
        template = f"[problem:{ctx.forced[i]}]" if coded else _template(ctx, section)
        if section == "assessment" and i == 0:
            template = SUMMARY_LINE  # a plan opens by naming the patient and the problem
        line = apply_casing(ctx.profile, render(ctx, template))
        if marker == "number":
            line.insert(0, Seg(f"{i + 1} ."))
        elif marker == "dash":
            line.insert(0, Seg("-"))
        body.append(line)
    if section in INLINE_SECTIONS and n_lines == 1 and ctx.chance(0.6):
        return [header + body[0]]
    return [header, *body]


def _note(ctx: NoteContext, plan: Plan, head: list[Line]) -> list[Line]:
    start_patient(ctx)
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


def _titled(ctx: NoteContext, kind: str, day: int) -> list[Line]:
    return [
        apply_casing(ctx.profile, [Seg(_house(ctx, TITLES[kind]))], header=True),
        apply_casing(ctx.profile, [Seg(date_text(ctx, day))]),
    ]


def discharge_summary(ctx: NoteContext, stay_days: int | None = None) -> list[Line]:
    """A discharge summary: admission and discharge dates, then ``SUMMARY_SECTIONS``."""
    stay = ctx.rng.randint(2, 14) if stay_days is None else stay_days
    return _note(ctx, SUMMARY_SECTIONS, _admin_lines(ctx, stay))


def admission_note(ctx: NoteContext) -> list[Line]:
    """An admission history and physical (day 0): HPI, history, exam, data, assessment and plan."""
    return _note(ctx, ADMISSION_SECTIONS, _titled(ctx, "admission", 0))


def progress_note(ctx: NoteContext, day: int | None = None) -> list[Line]:
    """A shorter S/O/A/P progress note on hospital ``day``."""
    return _note(ctx, PROGRESS_SECTIONS, _titled(ctx, "progress", day or ctx.rng.randint(1, 6)))


NOTE_PLANS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("discharge",), 0.3),
    (("admission", "discharge"), 0.25),
    (("admission", "progress", "discharge"), 0.2),
    (("progress", "discharge"), 0.1),
    (("admission", "progress", "progress", "discharge"), 0.05),
    (("progress",), 0.1),
)
"""Which notes a patient's stay leaves, and how often (i2b2 2010 is mostly discharge summaries)."""


def patient_notes(ctx: NoteContext, kinds: tuple[str, ...]) -> list[list[Line]]:
    """The notes of one stay, in order, sharing ``ctx`` (history, medications, problems)."""
    stay = ctx.rng.randint(len(kinds) + 1, 14)
    notes, day = [], 0
    for kind in kinds:
        if kind == "admission":
            notes.append(admission_note(ctx))
        elif kind == "progress":
            day = min(stay - 1, day + ctx.rng.randint(1, 3))
            notes.append(progress_note(ctx, day))
        else:
            notes.append(discharge_summary(ctx, stay))
    return notes
