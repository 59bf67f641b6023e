"""Building blocks of synthetic notes: typed segments, the per-note context and term styling.

A note is a list of lines; a line is a list of :class:`Seg` (a piece of text, typed when it is
an entity mention). Writers turn lines into i2b2 token lines or into natural MIMIC-style text.
All randomness comes from the note context's ``random.Random`` — never the global RNG.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from fedskip.data.synth.lexicon import DRUGS, PROBLEMS, PROCEDURES, TESTS, TREATMENTS
from fedskip.data.synth.sites import SiteProfile
from fedskip.data.synth.vocab import (
    ABBREVIATIONS,
    ANATOMY,
    COUNTABLE,
    DRUG_FORMS,
    LOCATABLE,
    LOCATIONS,
    LOCATIONS_START,
    MISSPELLINGS,
    MODALITIES,
    NON_PREFIXABLE,
    PROBLEM_PREFIXES,
    QUANTIFIERS,
    SIZEABLE,
    STAGEABLE,
    TEST_PREFIXES,
    TREATMENT_PREFIXES,
)

ENTITY_TYPES = ("problem", "test", "treatment")
POOLS: dict[str, dict[str, tuple[str, ...]]] = {
    "problem": PROBLEMS,
    "test": TESTS,
    "treatment": TREATMENTS,
    "drug": DRUGS,
    "procedure": PROCEDURES,
}
"""Term pools by kind; drugs and procedures are the two halves of the treatment pools."""
_ABBREVIATION_FORMS = frozenset(a for forms in ABBREVIATIONS.values() for a in forms)
_MORE_ACRONYMS = (
    "cbc ekg ecg ct mri mra bun inr pt ptt ldl hdl tsh ast alt crp esr bnp ck psa cea afp ua icu ed "
    "egd ercp eeg emg kub ng og iv po sc sq im sl pr prn bid tid qid qhs nad rrr ctab hiv vre mrsa "
    "mssa copd gerd cabg pci ffp tpn peg icd aicd picc bipap cpap xrt ra nc dnr dni osh"
)
ACRONYMS = frozenset(
    a
    for a in _ABBREVIATION_FORMS
    if " " not in a and len(a) <= 5 and a not in ("temp", "lactic", "sats")
) | frozenset(_MORE_ACRONYMS.split())
"""Tokens written in capitals by sites that do not write everything in lower case."""


@dataclass
class Seg:
    """A piece of a line; ``type`` is an entity type when the whole piece is one mention."""

    text: str
    type: str | None = None
    assertion: str | None = None
    """i2b2 assertion of a problem mention (``present`` when ``None``)."""


Line = list[Seg]


@dataclass
class NoteContext:
    """Per-note state: the RNG, the site's style, the patient and the running problem list."""

    rng: random.Random
    profile: SiteProfile
    sex: str
    age: int
    admit: dt.date
    problems: list[str] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)
    """Problem phrases the note must mention (ICD-9-coded diagnoses of an admission)."""
    deid_dates: bool = False
    """Write dates as MIMIC de-identification placeholders (``[**2151-8-4**]``)."""
    domain: str | None = None
    """The patient's main clinical domain: most unqualified terms come from it."""
    dx: str = ""
    """The admitting problem, named in every note of the patient."""
    pmh: list[str] = field(default_factory=list)
    home_meds: list[str] = field(default_factory=list)
    sentence: bool = False
    """Filling a prose section (HPI, hospital course): bare slots often take an article too."""
    asserting: str = ""
    """The assertion of the slot being filled (``absent``, ``possible``, ...; empty: present)."""
    cursor: dict[str, int] = field(default_factory=dict)
    """Next index into ``pmh`` / ``home_meds`` (so a list section names distinct items)."""

    @property
    def pron(self) -> str:
        return "he" if self.sex == "M" else "she"

    @property
    def poss(self) -> str:
        return "his" if self.sex == "M" else "her"

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


@lru_cache(maxsize=64)
def _zipf_cum_weights(n: int, exponent: float = 0.5) -> list[float]:
    total = 0.0
    out = []
    for rank in range(n):
        total += 1.0 / (rank + 1.5) ** exponent
        out.append(total)
    return out


def pick_domain(ctx: NoteContext, kind: str) -> str:
    """A domain of ``kind``'s pools, weighted by the site's specialty mix."""
    pools = POOLS[kind]
    names = [d for d in ctx.profile.domains if d in pools]
    weights = [ctx.profile.domains[d] for d in names]
    return ctx.rng.choices(names, weights=weights)[0]


def raw_term(ctx: NoteContext, kind: str, domain: str | None = None) -> str:
    """A lexicon term of entity ``kind`` from ``domain`` (or a site-weighted one), Zipf-sampled."""
    pools = POOLS[kind]
    if domain is None and ctx.domain in pools and ctx.chance(0.7):
        domain = ctx.domain
    if domain is None or domain not in pools:
        domain = pick_domain(ctx, kind)
    pool = pools[domain]
    return ctx.rng.choices(pool, cum_weights=_zipf_cum_weights(len(pool)))[0]


def typo(rng: random.Random, word: str) -> str:
    """A plausible misspelling of ``word`` (known misspelling, or a dropped/swapped/doubled letter)."""
    known = MISSPELLINGS.get(word)
    if known:
        return rng.choice(known)
    if len(word) < 5 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 2)
    op = rng.randrange(4)
    if op == 0:
        return word[:i] + word[i + 1 :]
    if op == 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == 2:
        return word[:i] + word[i] + word[i:]
    vowels = "aeiou"
    swap = rng.choice(vowels.replace(word[i], "")) if word[i] in vowels else word[i]
    return word[:i] + swap + word[i + 1 :]


def style(ctx: NoteContext, term: str) -> str:
    """Apply the site's abbreviation, hyphenation and misspelling habits to a lexicon term."""
    forms = ABBREVIATIONS.get(term)
    if forms and ctx.chance(ctx.profile.abbrev_rate):
        term = ctx.rng.choice(forms)
    if "-" in term and ctx.chance(0.25):
        term = term.replace("-", ctx.rng.choice((" ", "")))
    if ctx.chance(ctx.profile.typo_rate * 2.5):
        words = term.split()
        long_words = [i for i, w in enumerate(words) if len(w) >= 5]
        if long_words:
            i = ctx.rng.choice(long_words)
            words[i] = typo(ctx.rng, words[i])
            term = " ".join(words)
    return term


SEP = "|"
"""Separates a prefix (determiner, quantifier or modifier) from the term it qualifies in a
phrase: ``"her|severe|chest pain"``. Per the i2b2 2010 guidelines every prefix is inside the span."""


def _qualified(ctx: NoteContext, term: str) -> str:
    """Add what i2b2 keeps inside a problem span: a body location, a size or a stage."""
    head = term.split()[-1]
    if head in LOCATABLE and not term.startswith(LOCATIONS_START) and ctx.chance(0.4):
        if ctx.chance(0.45):
            return f"{term} of the {ctx.rng.choice(ANATOMY)}"
        return f"{ctx.rng.choice(LOCATIONS)} {term}"
    if head in SIZEABLE and ctx.chance(0.35):
        return f"{ctx.rng.randint(1, 9)}{ctx.rng.choice(('', '.5', '.2'))} {ctx.rng.choice(('cm', 'mm'))} {term}"
    if head in STAGEABLE and ctx.chance(0.35):
        return f"stage {ctx.rng.choice(('i', 'ii', 'iia', 'iib', 'iii', 'iiia', 'iv'))} {term}"
    return term


def problem_phrase(ctx: NoteContext, domain: str | None = None) -> str:
    """A problem mention: often one already in this note, else a fresh (maybe modified) term.

    Only mentions without a requested domain reuse the note's problems (or its forced ICD-9
    diagnoses): a ``{P:exam}`` slot must stay an exam finding.
    """
    present = ctx.asserting in ("", "present")
    if domain is None and present and ctx.forced and ctx.chance(0.4):
        return style(ctx, ctx.rng.choice(ctx.forced))
    if domain is None and present and ctx.problems and ctx.chance(0.2):
        return ctx.rng.choice(ctx.problems)
    term = raw_term(ctx, "problem", domain)
    plain = domain in ("exam", "allergy") or term in NON_PREFIXABLE
    text = style(ctx, term if plain else _qualified(ctx, term))
    prefix = ctx.rng.choice(PROBLEM_PREFIXES)
    if not plain and ctx.chance(0.25) and not set(prefix.split()) & set(term.split()):
        text = f"{prefix}{SEP}{text}"
    if domain not in ("exam", "allergy") and present:
        ctx.problems.append(text)
    return text


def test_phrase(ctx: NoteContext, domain: str | None = None) -> str:
    """A test mention, sometimes with a prefix (``repeat``, ``serial``, ...)."""
    term = raw_term(ctx, "test", domain)
    if term in MODALITIES and ctx.chance(0.45):
        term = f"{term} of the {ctx.rng.choice(ANATOMY)}"
    elif domain in (None, "lab") and ctx.chance(0.04):
        term = f"{raw_term(ctx, 'drug')} level"
    text = style(ctx, term)
    if ctx.chance(0.1):
        text = f"{ctx.rng.choice(TEST_PREFIXES)}{SEP}{text}"
    return text


def drug_phrase(ctx: NoteContext, domain: str | None = None) -> str:
    """A medication mention, sometimes with a route or intent prefix."""
    text = style(ctx, raw_term(ctx, "drug", domain))
    if ctx.chance(0.1):
        text = f"{text} {ctx.rng.choice(DRUG_FORMS)}"
    if ctx.chance(0.15):
        text = f"{ctx.rng.choice(TREATMENT_PREFIXES)}{SEP}{text}"
    return text


def procedure_phrase(ctx: NoteContext, domain: str | None = None) -> str:
    """A procedure, device, therapy or drug-class mention (a treatment that is not a drug)."""
    return style(ctx, raw_term(ctx, "procedure", domain))


def treatment_phrase(ctx: NoteContext, domain: str | None = None) -> str:
    """Any treatment: a drug (two thirds of the time) or a procedure."""
    return drug_phrase(ctx, domain) if ctx.chance(0.67) else procedure_phrase(ctx, domain)


Phraser = Callable[[NoteContext, "str | None"], str]
PHRASERS: dict[str, tuple[Phraser, str]] = {
    "P": (problem_phrase, "problem"),
    "T": (test_phrase, "test"),
    "R": (treatment_phrase, "treatment"),
    "D": (drug_phrase, "treatment"),
    "X": (procedure_phrase, "treatment"),
}
"""Slot code → (phrase maker, entity type)."""


def _article(word: str) -> str:
    """``a`` or ``an`` by sound: ``an mri``, ``an ekg``, ``a cxr``, ``an infiltrate``."""
    if word[:1] in "aeiou" or (word in ACRONYMS and word[:1] in "fhlmnrsx"):
        return "an"
    return "a"


def _plural(head: str) -> bool:
    return len(head) > 3 and head.endswith("s") and not head.endswith(("ss", "us", "is", "sis"))


def with_determiner(ctx: NoteContext, text: str, kind: str, *, possessive: bool = False) -> str:
    """Prefix an article, possessive or quantifier that agrees with the head noun.

    Countable singular heads take ``a``/``an``, ``the`` or ``his``/``her``; plural heads a
    possessive, ``the`` or a quantifier (problems); other heads ``the`` or a possessive.
    ``possessive`` forces ``his``/``her``. The prefix stays inside the span (i2b2 2010)."""
    words = text.replace(SEP, " ").split()
    head = words[words.index("of") - 1] if "of" in words[1:] else words[-1]  # "an mri of the brain"
    first = words[0]
    if possessive:
        return f"{ctx.poss}{SEP}{text}"
    options: tuple[str, ...]
    if head in COUNTABLE and not _plural(head):
        options = ("a", "a", "the", "poss") if kind != "treatment" else ("a", "the", "poss", "poss")
    elif _plural(head):
        options = ("poss", "the", "quant", "quant") if kind == "problem" else ("poss", "the")
    else:  # a mass noun: "her dyspnea", "his creatinine", "the heparin"; often nothing
        options = ("poss", "", "", "") if kind == "problem" else ("poss", "poss", "the", "")
    det = ctx.rng.choice(options)
    if not det:
        return text
    if det == "poss":
        det = ctx.poss
    elif det == "quant":
        det = ctx.rng.choice(QUANTIFIERS)
    elif det == "a":
        det = _article(first)
    return f"{det}{SEP}{text}"


def entity_segs(text: str, kind: str, assertion: str | None = None) -> list[Seg]:
    """A marked phrase as one typed segment: prefixes and term all inside the span."""
    return [Seg(" ".join(text.split(SEP)), kind, assertion)]


def date_text(ctx: NoteContext, offset_days: int = 0) -> str:
    """A date in the site's format, ``offset_days`` after admission."""
    day = ctx.admit + dt.timedelta(days=offset_days)
    casing = ctx.profile.casing
    if ctx.deid_dates or casing == "lower":
        return f"[**{day.year}-{day.month}-{day.day}**]"
    if casing == "title":
        return f"{day.month}/{day.day}/{day.year}"
    return day.isoformat()


def number(ctx: NoteContext, low: float, high: float, decimals: int = 1) -> str:
    """A value uniform in [low, high] with ``decimals`` digits."""
    value = ctx.rng.uniform(low, high)
    return f"{value:.{decimals}f}" if decimals else str(round(value))


def apply_casing(profile: SiteProfile, line: Line, *, header: bool = False) -> Line:
    """Write a line in the site's casing: acronyms in capitals, headers styled, first word capitalised."""
    out: Line = []
    for i, seg in enumerate(line):
        words = seg.text.split(" ")
        if profile.casing == "lower":
            words = [w.lower() for w in words]
        elif header and profile.casing == "upper_headers":
            words = [w.upper() for w in words]
        else:
            words = [w.upper() if w in ACRONYMS else w for w in words]
            if header:
                words = [w[:1].upper() + w[1:] for w in words]
            elif i == 0 and words and words[0][:1].isalpha() and words[0] not in ACRONYMS:
                words[0] = words[0][:1].upper() + words[0][1:]
        out.append(Seg(" ".join(words), seg.type, seg.assertion))
    return out
