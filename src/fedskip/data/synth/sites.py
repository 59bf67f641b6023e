"""Hospital profiles: specialty mix, writing style and size — the natural non-IID split.

Site ``k`` (1-based) uses ``PROFILES[(k - 1) % len(PROFILES)]``; sites past the table repeat a
profile with a size factor of its own, so every site count is valid and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

DOMAINS = ("cardio", "onc", "icu", "general", "renal", "neuro", "gi", "id")


@dataclass(frozen=True)
class SiteProfile:
    """How one hospital writes notes.

    ``domains`` weights the clinical domains terms are drawn from; ``abbrev_rate`` and
    ``typo_rate`` are per-mention probabilities; ``casing`` is ``upper_headers`` (i2b2 style),
    ``title`` or ``lower``; ``categories`` weights MIMIC note categories.
    """

    name: str
    specialty: str
    domains: dict[str, float]
    abbrev_rate: float
    typo_rate: float
    casing: str
    terse: float
    """Probability of a telegraphic line (no verbs, lists) instead of a full sentence."""
    blank_between_sections: bool
    categories: dict[str, float]
    house_style: int = 0
    """Which of each section's header and note title variants the site mostly writes
    (``HPI :`` vs ``History of Present Illness :``): the hospital's own templates."""


CATEGORIES = (
    "Discharge summary",
    "Radiology",
    "Nursing",
    "Nursing/other",
    "Physician ",
    "ECG",
    "Echo",
    "Respiratory ",
)
"""MIMIC-III NOTEEVENTS categories used (note the trailing spaces MIMIC has on two of them)."""

PROFILES: tuple[SiteProfile, ...] = (
    SiteProfile(
        name="cardiology-heavy academic centre",
        specialty="cardiology",
        domains={
            "cardio": 6.0,
            "general": 2.0,
            "renal": 1.0,
            "icu": 0.8,
            "id": 0.5,
            "gi": 0.4,
            "neuro": 0.4,
            "onc": 0.2,
        },
        abbrev_rate=0.45,
        typo_rate=0.02,
        casing="upper_headers",
        terse=0.25,
        blank_between_sections=True,
        house_style=0,
        categories={
            "Discharge summary": 5.4,
            "Radiology": 1.5,
            "Nursing": 1,
            "Nursing/other": 1,
            "Physician ": 1,
            "ECG": 3,
            "Echo": 2.5,
            "Respiratory ": 0.3,
        },
    ),
    SiteProfile(
        name="comprehensive cancer centre",
        specialty="oncology",
        domains={
            "onc": 6.0,
            "general": 2.0,
            "id": 1.2,
            "gi": 1.0,
            "icu": 0.6,
            "renal": 0.5,
            "cardio": 0.4,
            "neuro": 0.6,
        },
        abbrev_rate=0.2,
        typo_rate=0.01,
        casing="title",
        terse=0.1,
        blank_between_sections=True,
        house_style=1,
        categories={
            "Discharge summary": 5.4,
            "Radiology": 4,
            "Nursing": 1.5,
            "Nursing/other": 0.5,
            "Physician ": 2,
            "ECG": 0.5,
            "Echo": 0.5,
            "Respiratory ": 0.3,
        },
    ),
    SiteProfile(
        name="tertiary intensive care unit",
        specialty="icu",
        domains={
            "icu": 6.0,
            "id": 2.0,
            "renal": 1.5,
            "general": 1.5,
            "cardio": 1.2,
            "gi": 1.0,
            "neuro": 1.0,
            "onc": 0.3,
        },
        abbrev_rate=0.6,
        typo_rate=0.05,
        casing="lower",
        terse=0.55,
        blank_between_sections=False,
        house_style=2,
        categories={
            "Discharge summary": 2.7,
            "Radiology": 2,
            "Nursing": 2.5,
            "Nursing/other": 3,
            "Physician ": 2.5,
            "ECG": 0.8,
            "Echo": 0.5,
            "Respiratory ": 2.5,
        },
    ),
    SiteProfile(
        name="community general medicine hospital",
        specialty="general medicine",
        domains={
            "general": 6.0,
            "gi": 1.5,
            "renal": 1.2,
            "cardio": 1.5,
            "id": 1.2,
            "neuro": 1.0,
            "icu": 0.5,
            "onc": 0.5,
        },
        abbrev_rate=0.35,
        typo_rate=0.03,
        casing="upper_headers",
        terse=0.35,
        blank_between_sections=True,
        house_style=3,
        categories={
            "Discharge summary": 5.4,
            "Radiology": 2,
            "Nursing": 2,
            "Nursing/other": 1,
            "Physician ": 1.5,
            "ECG": 1,
            "Echo": 0.7,
            "Respiratory ": 0.5,
        },
    ),
    SiteProfile(
        name="nephrology and transplant centre",
        specialty="nephrology",
        domains={
            "renal": 6.0,
            "general": 2.0,
            "cardio": 1.5,
            "id": 1.0,
            "icu": 0.8,
            "gi": 0.6,
            "neuro": 0.3,
            "onc": 0.3,
        },
        abbrev_rate=0.4,
        typo_rate=0.02,
        casing="title",
        terse=0.3,
        blank_between_sections=False,
        house_style=4,
        categories={
            "Discharge summary": 5.4,
            "Radiology": 1.5,
            "Nursing": 1.5,
            "Nursing/other": 1,
            "Physician ": 2,
            "ECG": 1,
            "Echo": 1,
            "Respiratory ": 0.3,
        },
    ),
    SiteProfile(
        name="neuroscience institute",
        specialty="neurology",
        domains={
            "neuro": 6.0,
            "general": 2.0,
            "cardio": 1.2,
            "icu": 1.0,
            "id": 0.6,
            "renal": 0.4,
            "gi": 0.4,
            "onc": 0.4,
        },
        abbrev_rate=0.3,
        typo_rate=0.03,
        casing="upper_headers",
        terse=0.2,
        blank_between_sections=True,
        house_style=5,
        categories={
            "Discharge summary": 4.5,
            "Radiology": 3,
            "Nursing": 2,
            "Nursing/other": 1,
            "Physician ": 1.5,
            "ECG": 0.6,
            "Echo": 0.6,
            "Respiratory ": 0.5,
        },
    ),
    SiteProfile(
        name="digestive diseases centre",
        specialty="gastroenterology",
        domains={
            "gi": 6.0,
            "general": 2.0,
            "id": 1.0,
            "onc": 1.0,
            "renal": 0.8,
            "icu": 0.8,
            "cardio": 0.6,
            "neuro": 0.2,
        },
        abbrev_rate=0.5,
        typo_rate=0.04,
        casing="lower",
        terse=0.45,
        blank_between_sections=False,
        house_style=6,
        categories={
            "Discharge summary": 5.4,
            "Radiology": 2.5,
            "Nursing": 1.5,
            "Nursing/other": 1.5,
            "Physician ": 1.5,
            "ECG": 0.5,
            "Echo": 0.3,
            "Respiratory ": 0.3,
        },
    ),
)

SIZE_FACTORS = (1.25, 0.75, 1.5, 0.5, 1.0, 1.35, 0.65, 1.15, 0.85, 0.6, 1.4)
"""Site ``k`` holds about ``docs × SIZE_FACTORS[(k - 1) % len]`` documents per task."""


def site_profile(index: int) -> SiteProfile:
    """Profile of the 1-based site ``index``."""
    if index < 1:
        raise ValueError(f"site index must be >= 1, got {index}")
    return PROFILES[(index - 1) % len(PROFILES)]


def site_size(index: int, docs: int) -> int:
    """Documents per task at the 1-based site ``index`` (at least 2)."""
    factor = SIZE_FACTORS[(index - 1) % len(SIZE_FACTORS)]
    return max(2, round(docs * factor))
