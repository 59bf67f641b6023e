"""Site-level generation: i2b2-style NER notes of patients with several notes, and annotation noise.

Every site draws from its own ``random.Random`` seeded by a string of (seed, task, site), so a
site's notes do not change when other sites are added, and noise has its own RNG so that the
text is identical with and without label noise (only the annotations differ).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from fedskip.data.synth.notes import NOTE_PLANS, patient_notes
from fedskip.data.synth.sites import SiteProfile
from fedskip.data.synth.text import ENTITY_TYPES, Line, NoteContext

GENERATOR_VERSION = "4"
"""Bump when the generator's output changes: it is part of the ``ensure_synth`` cache key."""


@dataclass
class Mention:
    """An i2b2 concept: 1-based line, 0-based first and last (inclusive) whitespace token."""

    line: int
    start: int
    end: int
    type: str
    assertion: str = "present"
    """The i2b2 assertion of a problem (``.ast``); meaningless for tests and treatments."""


@dataclass
class NerNote:
    """A whitespace-tokenised note (one sentence per line; blank lines kept) and its concepts."""

    doc_id: str
    lines: list[list[str]]
    mentions: list[Mention] = field(default_factory=list)
    patient_id: str = ""

    def mention_text(self, m: Mention) -> str:
        """The concept's words as the .con file quotes them (lower case)."""
        return " ".join(self.lines[m.line - 1][m.start : m.end + 1]).lower()


@dataclass(frozen=True)
class NoteShape:
    """How a site's patients and notes are shaped (config keys ``synth-notes-per-patient``,
    ``synth-note-lines``); the default is the i2b2-like corpus.

    ``notes_per_patient``: 0 = each patient leaves one stay's natural notes (``NOTE_PLANS``:
    one to four long notes); n ≥ 1 = every patient has exactly n notes (progress notes, the
    last a discharge summary). ``note_lines``: 0 = whole notes; n ≥ 1 = each note keeps n of
    its non-blank lines, drawn at random in their order. A privacy study wants many patients
    per site, each with little text (a DP step's noise is set by the units it averages, the
    words of a unit only cost compute): e.g. one note of four lines per patient.
    """

    notes_per_patient: int = 0
    note_lines: int = 0

    def __post_init__(self) -> None:
        from fedskip.errors import ConfigError

        for key, value in (
            ("synth-notes-per-patient", self.notes_per_patient),
            ("synth-note-lines", self.note_lines),
        ):
            if value < 0:
                raise ConfigError(f"config key '{key}': {value} must be >= 0 (0 = natural)")

    @property
    def natural(self) -> bool:
        return self.notes_per_patient == 0 and self.note_lines == 0

    def kinds(self, rng: random.Random) -> tuple[str, ...]:
        """The note kinds of the next patient's stay."""
        if self.notes_per_patient == 0:
            plans = [plan for plan, _ in NOTE_PLANS]
            return rng.choices(plans, weights=[w for _, w in NOTE_PLANS])[0]
        return ("progress",) * (self.notes_per_patient - 1) + ("discharge",)

    def cut(self, lines: list[Line], rng: random.Random) -> list[Line]:
        """``note_lines`` of the note's non-blank lines, in order (all with 0)."""
        kept = [line for line in lines if any(seg.text.strip() for seg in line)]
        if self.note_lines == 0 or len(kept) <= self.note_lines:
            return lines if self.note_lines == 0 else kept
        chosen = sorted(rng.sample(range(len(kept)), self.note_lines))
        return [kept[i] for i in chosen]


def site_rng(seed: int, task: str, site: int, purpose: str = "text") -> random.Random:
    """A deterministic RNG for one (seed, task, site, purpose); string seeds hash with SHA-512."""
    return random.Random(f"fedskip-synth:{seed}:{task}:{site}:{purpose}")


def new_context(rng: random.Random, profile: SiteProfile) -> NoteContext:
    """A context for one patient: sex, age and an admission date (i2b2-era dates)."""
    admit = dt.date(2006, 1, 1) + dt.timedelta(days=rng.randrange(0, 8 * 365))
    return NoteContext(
        rng=rng, profile=profile, sex=rng.choice("MF"), age=rng.randint(19, 96), admit=admit
    )


def tokenize(doc_id: str, lines: list[Line], patient_id: str = "") -> NerNote:
    """Whitespace-split each line; a typed segment becomes a mention over its tokens."""
    note = NerNote(doc_id=doc_id, lines=[], patient_id=patient_id)
    for number, line in enumerate(lines, start=1):
        tokens: list[str] = []
        for seg in line:
            words = seg.text.split()
            if seg.type and words:
                end = len(tokens) + len(words) - 1
                assertion = seg.assertion or "present"
                note.mentions.append(Mention(number, len(tokens), end, seg.type, assertion))
            tokens.extend(words)
        note.lines.append(tokens)
    return note


def generate_ner_site(
    site: int, profile: SiteProfile, n_docs: int, seed: int, shape: NoteShape | None = None
) -> list[NerNote]:
    """``n_docs`` clean (noise-free) annotated notes of one site, patient after patient.

    Each patient leaves the notes of one stay (``NOTE_PLANS``: a discharge summary, or an
    admission note, progress notes and the discharge summary; or ``shape``'s fixed count and
    length); the last patient's plan is cut to fit ``n_docs``. Notes are numbered in order;
    ``patient_id`` is ``site<K>-p<NNN>``.
    """
    shape = shape or NoteShape()
    rng = site_rng(seed, "ner", site)
    cut_rng = site_rng(seed, "ner", site, "shape")  # its own stream: the text stays the same
    notes: list[NerNote] = []
    patients = 0
    while len(notes) < n_docs:
        ctx = new_context(rng, profile)
        kinds = shape.kinds(rng)[: n_docs - len(notes)]
        patients += 1
        patient = f"site{site}-p{patients:03d}"
        for lines in patient_notes(ctx, kinds):
            lines = lines if shape.natural else shape.cut(lines, cut_rng)
            notes.append(tokenize(f"site{site}-{len(notes) + 1:04d}", lines, patient))
    return notes


def _occupied(note: NerNote, line: int, skip: Mention) -> set[int]:
    taken: set[int] = set()
    for m in note.mentions:
        if m.line == line and m is not skip:
            taken.update(range(m.start, m.end + 1))
    return taken


def _shift(rng: random.Random, note: NerNote, m: Mention) -> bool:
    """Move one boundary of ``m`` by one token (a typical annotator slip); False if impossible."""
    n_tokens = len(note.lines[m.line - 1])
    taken = _occupied(note, m.line, m)
    options = []
    if m.end + 1 < n_tokens and m.end + 1 not in taken:
        options.append((m.start, m.end + 1))
    if m.start - 1 >= 0 and m.start - 1 not in taken:
        options.append((m.start - 1, m.end))
    if m.end > m.start:
        options += [(m.start + 1, m.end), (m.start, m.end - 1)]
    if not options:
        return False
    m.start, m.end = rng.choice(options)
    return True


def apply_ner_noise(notes: list[NerNote], rate: float, rng: random.Random) -> dict[str, int]:
    """Corrupt exactly ``round(rate × mentions)`` mentions: drop, shift a boundary, or retype.

    Returns the count of each operation (``dropped``, ``shifted``, ``retyped``).
    """
    refs = [(d, j) for d, note in enumerate(notes) for j in range(len(note.mentions))]
    k = round(rate * len(refs))
    counts = {"dropped": 0, "shifted": 0, "retyped": 0}
    dropped: set[tuple[int, int]] = set()
    for d, j in sorted(rng.sample(refs, k)):
        note, m = notes[d], notes[d].mentions[j]
        op = rng.choice(("dropped", "shifted", "retyped"))
        if op == "shifted" and not _shift(rng, note, m):
            op = "retyped"
        if op == "retyped":
            m.type = rng.choice([t for t in ENTITY_TYPES if t != m.type])
            m.assertion = "present"
        elif op == "dropped":
            dropped.add((d, j))
        counts[op] += 1
    for d, note in enumerate(notes):
        note.mentions = [m for j, m in enumerate(note.mentions) if (d, j) not in dropped]
    return counts
