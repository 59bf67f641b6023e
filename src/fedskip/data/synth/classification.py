"""Site-level generation of the MIMIC-III-style classification corpus.

Per site: admissions with ICD-9 codes (drawn by the site's specialty mix), notes of the MIMIC
categories (weighted per site) attached to those admissions, a few ``ISERROR=1`` rows, and label
noise: a ``label_noise`` share of notes get another CATEGORY and of admissions a dropped or extra
ICD-9 code. Discharge summaries mention their admission's coded diagnoses (not always, and with
distractor diagnoses), which is what makes ``label=icd9`` learnable.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

from fedskip.data.synth.generate import NoteShape, site_rng
from fedskip.data.synth.icd9 import ICD9
from fedskip.data.synth.mimic_notes import category_note, natural_text
from fedskip.data.synth.sites import CATEGORIES, SiteProfile
from fedskip.data.synth.text import NoteContext

COMMON_CODES = ("4019", "4280", "42731", "5849", "25000", "2724", "51881", "5990", "41401", "2859")
"""The most frequent MIMIC-III codes get a higher prior at every site."""

ERROR_SHARE = 0.04
"""Share (at least one row) of extra ``ISERROR=1`` rows per site, which readers must drop."""


@dataclass
class Admission:
    """One hospital stay: patient, dates and its ICD-9 codes in SEQ_NUM order."""

    subject_id: int
    hadm_id: int
    sex: str
    age: int
    admit: dt.date
    codes: list[str]


@dataclass
class NoteRow:
    """One NOTEEVENTS row (``None`` writes an empty field, as MIMIC leaves it)."""

    subject_id: int
    hadm_id: int
    chartdate: str
    charttime: str | None
    storetime: str | None
    category: str
    description: str
    cgid: int | None
    iserror: int | None
    text: str


@dataclass
class ClsSite:
    """A generated site: notes (row order = ROW_ID order), admissions and statistics."""

    notes: list[NoteRow]
    admissions: list[Admission]
    stats: dict[str, object] = field(default_factory=dict)


def _weighted_sample(
    rng: random.Random, items: list[str], weights: list[float], k: int
) -> list[str]:
    """``k`` distinct items drawn in order with probability proportional to ``weights``."""
    items, weights, out = list(items), list(weights), []
    for _ in range(min(k, len(items))):
        i = rng.choices(range(len(items)), weights=weights)[0]
        out.append(items.pop(i))
        weights.pop(i)
    return out


def sample_codes(rng: random.Random, profile: SiteProfile) -> list[str]:
    """3–9 ICD-9 codes, the first (primary) most likely from the site's specialty."""
    codes = list(ICD9)
    weights = [
        profile.domains.get(ICD9[c][1], 0.3) * (6.0 if c in COMMON_CODES else 1.0) for c in codes
    ]
    return _weighted_sample(rng, codes, weights, rng.randint(3, 9))


def _admissions(
    rng: random.Random, site: int, profile: SiteProfile, count: int, readmit_rate: float = 0.15
) -> list[Admission]:
    out: list[Admission] = []
    for i in range(count):
        readmit = out and rng.random() < readmit_rate
        prev = rng.choice(out) if readmit else None
        admit = dt.date(2100, 1, 1) + dt.timedelta(days=rng.randrange(0, 90 * 365))
        out.append(
            Admission(
                subject_id=prev.subject_id if prev else site * 10000 + i + 1,
                hadm_id=100000 + site * 10000 + i + 1,
                sex=prev.sex if prev else rng.choice("MF"),
                age=prev.age if prev else rng.randint(19, 89),
                admit=admit,
                codes=sample_codes(rng, profile),
            )
        )
    return out


def _categories(rng: random.Random, profile: SiteProfile, n: int) -> list[str]:
    cats = list(CATEGORIES)
    picked = rng.choices(cats, weights=[profile.categories.get(c, 0.0) for c in cats], k=n)
    if "Discharge summary" not in picked:
        picked[0] = "Discharge summary"
    return picked


def _note_row(
    rng: random.Random, profile: SiteProfile, adm: Admission, category: str, note_lines: int = 0
) -> NoteRow:
    ctx = NoteContext(
        rng=rng, profile=profile, sex=adm.sex, age=adm.age, admit=adm.admit, deid_dates=True
    )
    ctx.forced = [rng.choice(ICD9[c][2]) for c in adm.codes if rng.random() < 0.9]
    description, lines = category_note(ctx, category)
    if note_lines:  # the last lines: where a summary lists its discharge diagnoses
        lines = [line for line in lines if any(seg.text.strip() for seg in line)][-note_lines:]
    day = adm.admit + dt.timedelta(days=rng.randint(0, 6))
    stamp = f"{day.isoformat()} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00"
    timed = category not in ("Discharge summary", "ECG")
    staff = category in ("Nursing", "Nursing/other", "Physician ", "Respiratory ")
    return NoteRow(
        subject_id=adm.subject_id,
        hadm_id=adm.hadm_id,
        chartdate=day.isoformat(),
        charttime=stamp if timed else None,
        storetime=stamp if staff else None,
        category=category,
        description=description,
        cgid=rng.randint(14000, 21999) if staff else None,
        iserror=None,
        text=natural_text(lines),
    )


def _noisy_codes(rng: random.Random, admissions: list[Admission], rate: float) -> int:
    """Drop one code from, or add one to, ``round(rate × admissions)`` admissions."""
    k = round(rate * len(admissions))
    for adm in rng.sample(admissions, k):
        if len(adm.codes) > 1 and rng.random() < 0.5:
            adm.codes.pop(rng.randrange(1, len(adm.codes)))
        else:
            adm.codes.append(rng.choice([c for c in ICD9 if c not in adm.codes]))
    return k


def generate_cls_site(
    site: int,
    profile: SiteProfile,
    n_docs: int,
    seed: int,
    label_noise: float,
    shape: NoteShape | None = None,
) -> ClsSite:
    """``n_docs`` valid notes (plus error rows) of one site, with labels noised at ``label_noise``.

    ``shape`` (see :class:`~fedskip.data.synth.generate.NoteShape`): with ``notes_per_patient``
    n ≥ 1 every patient has one admission (no readmissions) and n notes, the last its
    discharge summary (the note that carries the ICD-9 codes); ``note_lines`` keeps each
    note's last lines.
    """
    shape = shape or NoteShape()
    rng = site_rng(seed, "classification", site)
    if shape.notes_per_patient == 0:
        categories = _categories(rng, profile, n_docs)
        n_ds = categories.count("Discharge summary")
        admissions = _admissions(rng, site, profile, n_ds + max(0, (n_docs - n_ds) // 6))
    else:
        per = shape.notes_per_patient
        admissions = _admissions(rng, site, profile, -(-n_docs // per), readmit_rate=0.0)
        others = [c for c in CATEGORIES if c != "Discharge summary"]
        weights = [profile.categories.get(c, 0.0) for c in others]
        categories = []
        for _ in admissions:
            categories += rng.choices(others, weights=weights, k=per - 1) + ["Discharge summary"]
        categories = categories[:n_docs]
    notes, ds_seen, stay = [], 0, 0
    for category in categories:
        if shape.notes_per_patient:  # the patient's notes in order, their summary last
            adm, stay = admissions[stay // shape.notes_per_patient], stay + 1
        elif category == "Discharge summary":
            adm, ds_seen = admissions[ds_seen], ds_seen + 1
        else:
            adm = rng.choice(admissions)
        notes.append(_note_row(rng, profile, adm, category, shape.note_lines))
    n_ds = categories.count("Discharge summary")
    noise = site_rng(seed, "classification", site, "noise")
    flipped = rng_sample_indices(noise, len(notes), label_noise)
    for i in flipped:
        notes[i].category = noise.choice([c for c in CATEGORIES if c != notes[i].category])
    noisy_adm = _noisy_codes(noise, admissions, label_noise)
    for _ in range(max(1, round(ERROR_SHARE * n_docs))):
        bad = _note_row(
            rng, profile, rng.choice(admissions), rng.choice(CATEGORIES), shape.note_lines
        )
        bad.iserror = 1
        notes.insert(rng.randint(0, len(notes)), bad)
    stats: dict[str, object] = {
        "notes": n_docs,
        "error_rows": len(notes) - n_docs,
        "admissions": len(admissions),
        "discharge_summaries": n_ds,
        "categories_flipped": len(flipped),
        "admissions_codes_noised": noisy_adm,
        "categories": {
            c: sum(1 for n in notes if n.category == c and not n.iserror) for c in CATEGORIES
        },
    }
    return ClsSite(notes=notes, admissions=admissions, stats=stats)


def rng_sample_indices(rng: random.Random, n: int, rate: float) -> list[int]:
    """``round(rate × n)`` distinct indices in ``range(n)``, sorted."""
    return sorted(rng.sample(range(n), round(rate * n)))
