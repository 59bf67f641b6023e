"""The template mini-language and its slots.

A template is whitespace-separated text with three kinds of markup:

* ``{NAME}`` or ``{NAME:arg}`` — a slot filled by a function of the note context
  (``{P:cardio}`` a cardiology problem, ``{aT}`` a test with an article or possessive inside the
  span, ``{pHMED}`` one of the patient's home medications with ``his``/``her``, ``{DX}`` the
  admitting problem, ``{PMH}`` the next item of the patient's history, ...);
  ``{P!absent}`` gives the problems of the slot an i2b2 assertion (``present`` otherwise);
* ``[type:alt1~alt2]`` / ``[problem!possible:alt]`` — a literal entity mention of ``type`` (one
  alternative at random; ``|`` separates a prefix such as ``the|procedure``): this is
  how the same surface form gets different types by context (``[test:potassium]`` was low and was
  repleted with ``[treatment:potassium]``);
* ``<alt1~alt2>`` — literal non-entity words (``<ct surgery~the dialysis unit>``); an empty
  alternative makes the words optional.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from fedskip.data.synth.text import (
    ENTITY_TYPES,
    PHRASERS,
    SEP,
    Line,
    NoteContext,
    Seg,
    date_text,
    drug_phrase,
    entity_segs,
    number,
    style,
    with_determiner,
)
from fedskip.data.synth.vocab import (
    DOSE_FORMS,
    DOSE_UNITS,
    FREQUENCIES,
    HOSPITALS,
    NON_ENTITY_FILLERS,
    ROUTES,
    SERVICES,
    SURNAMES,
)

Slot = Callable[[NoteContext, str], list[Seg]]

_MARKUP = re.compile(r"(\{[^}]+\}|\[[a-z_!]+:[^\]]+\]|<[^>]*>)")

RANGES: dict[str, tuple[float, float, int]] = {
    "k": (2.6, 6.1, 1),
    "mg": (1.0, 2.7, 1),
    "ca": (7.2, 12.1, 1),
    "glu": (62, 430, 0),
    "glu_low": (21, 58, 0),
    "plt": (7, 460, 0),
    "hct": (18.5, 44.0, 1),
    "cr": (0.5, 7.5, 1),
    "trop": (0.01, 14.0, 2),
    "ef": (15, 65, 0),
    "liters": (1, 8, 0),
    "wbc": (0.8, 26.0, 1),
    "na": (119, 151, 0),
    "inr": (0.9, 5.2, 1),
    "lactate": (0.6, 9.5, 1),
    "n": (2, 6, 0),
    "hgb": (5.9, 15.2, 1),
    "sat": (84, 100, 0),
    "temp": (96.0, 103.5, 1),
    "bun": (6, 110, 0),
    "units": (1, 4, 0),
    "dose": (5, 80, 0),
}

LAB_PANEL: dict[str, str] = {
    "sodium": "na",
    "potassium": "k",
    "chloride": "na",
    "bicarbonate": "bun",
    "bun": "bun",
    "creatinine": "cr",
    "glucose": "glu",
    "white blood cell count": "wbc",
    "hemoglobin": "hgb",
    "hematocrit": "hct",
    "platelets": "plt",
    "inr": "inr",
    "calcium": "ca",
    "magnesium": "mg",
    "lactate": "lactate",
    "troponin": "trop",
    "albumin": "mg",
    "alt": "bun",
    "ast": "bun",
    "total bilirubin": "mg",
    "alkaline phosphatase": "plt",
    "ptt": "bun",
    "lipase": "plt",
}
"""Lab test → value range key (values are plausible-looking, not physiologically tied)."""

VITALS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("t", "temp", "tmax", "tc", "temperature"), "temp"),
    (("hr", "heart rate", "p", "pulse"), "hr"),
    (("bp", "blood pressure"), "bp"),
    (("rr", "respiratory rate", "resp"), "rr"),
    (("o2 sat", "spo2", "sat", "o2 sats", "oxygen saturation", "pulse ox"), "sat"),
)


ASSERTIONS = (
    "present",
    "absent",
    "possible",
    "conditional",
    "hypothetical",
    "associated_with_someone_else",
)


def _entity(code: str) -> Slot:
    phrase, kind = PHRASERS[code]
    return lambda ctx, arg: entity_segs(phrase(ctx, arg or None), kind)


def _any_entity(ctx: NoteContext, arg: str) -> list[Seg]:
    code = ctx.rng.choices(("P", "T", "R"), weights=(0.45, 0.25, 0.3))[0]
    phrase, kind = PHRASERS[code]
    return entity_segs(phrase(ctx, None), kind)


def _entity_list(code: str) -> Slot:
    phrase, kind = PHRASERS[code]

    def fill(ctx: NoteContext, arg: str) -> list[Seg]:
        n = ctx.rng.choice((2, 2, 3, 3, 4))
        segs: list[Seg] = []
        for i in range(n):
            if i:
                last = i == n - 1
                segs.append(Seg(ctx.rng.choice((", and", "and", ", or")) if last else ","))
            segs.extend(entity_segs(phrase(ctx, arg or None), kind))
        return segs

    return fill


def start_patient(ctx: NoteContext) -> None:
    """Draw the patient's history once: main domain, admitting problem, past history, home meds.

    Every note of the patient shares them (``ctx`` lives as long as the patient); a note with
    coded diagnoses (``ctx.forced``) is admitted for the first of them."""
    if ctx.dx:
        return
    from fedskip.data.synth.text import pick_domain, problem_phrase, raw_term

    ctx.domain = pick_domain(ctx, "problem")
    ctx.dx = ctx.forced[0] if ctx.forced else problem_phrase(ctx, ctx.domain)
    chronic = [
        style(ctx, raw_term(ctx, "problem", "chronic" if ctx.chance(0.5) else ctx.domain))
        for _ in range(ctx.rng.randint(2, 6))
    ]
    ctx.pmh = list(dict.fromkeys(p for p in chronic if p != ctx.dx))
    meds = [style(ctx, raw_term(ctx, "drug")) for _ in range(ctx.rng.randint(3, 8))]
    ctx.home_meds = list(dict.fromkeys(meds))


def _next(ctx: NoteContext, key: str, items: list[str]) -> str:
    i = ctx.cursor.get(key, 0)
    ctx.cursor[key] = i + 1
    return items[i % len(items)] if items else ""


def _history(key: str) -> Callable[[NoteContext], tuple[str, str]]:
    """The patient's admitting problem, next history item or next home medication."""

    def pick(ctx: NoteContext) -> tuple[str, str]:
        start_patient(ctx)
        if key == "DX":
            return ctx.dx, "problem"
        if key == "PMH":
            return _next(ctx, "pmh", ctx.pmh or [ctx.dx]), "problem"
        if key == "HMEDS":
            return ctx.rng.choice(("home medications", "home meds", "outpatient medications")), (
                "treatment"
            )
        return _next(ctx, "meds", ctx.home_meds), "treatment"

    return pick


Maker = Callable[[NoteContext, str], tuple[str, str]]


def _phrase_maker(code: str) -> Maker:
    phrase, kind = PHRASERS[code]
    return lambda ctx, arg: (phrase(ctx, arg or None), kind)


def _history_maker(key: str) -> Maker:
    pick = _history(key)
    return lambda ctx, arg: pick(ctx)


ENTITY_MAKERS: dict[str, Maker] = {
    **{code: _phrase_maker(code) for code in PHRASERS},
    **{key: _history_maker(key) for key in ("DX", "PMH", "HMED", "HMEDS")},
}
"""Slots that make one entity phrase; ``a<NAME>`` / ``p<NAME>`` add a determiner / possessive."""


def _one(name: str, det: str) -> Slot:
    make = ENTITY_MAKERS[name]

    def fill(ctx: NoteContext, arg: str) -> list[Seg]:
        text, kind = make(ctx, arg)
        chance = 0.8 if det == "a" else 0.45 if ctx.sentence else 0.0  # prose has more articles
        if det == "p" or ctx.chance(chance):
            text = with_determiner(ctx, text, kind, possessive=det == "p")
        return entity_segs(text, kind)

    return fill


def _history_list(ctx: NoteContext, arg: str) -> list[Seg]:
    start_patient(ctx)
    items = (ctx.pmh or [ctx.dx])[: ctx.rng.randint(2, 3)]
    segs: list[Seg] = []
    for i, item in enumerate(items):
        if i:
            segs.append(Seg("and" if i == len(items) - 1 else ","))
        segs.extend(entity_segs(item, "problem"))
    return segs


def _lab(ctx: NoteContext, arg: str) -> list[Seg]:
    name = arg or ctx.rng.choice(tuple(LAB_PANEL))
    low, high, dec = RANGES[LAB_PANEL.get(name, "bun")]
    glue = ctx.rng.choice(("", "", "of", "was", "-", "="))
    value = number(ctx, low, high, dec)
    tail = [Seg(ctx.rng.choice(("( h )", "( l )", "*")))] if ctx.chance(0.1) else []
    return [Seg(style(ctx, name), "test"), *([Seg(glue)] if glue else []), Seg(value), *tail]


def _lab_panel(ctx: NoteContext, arg: str) -> list[Seg]:
    names = ctx.rng.sample(tuple(LAB_PANEL), ctx.rng.randint(3, 7))
    sep = ctx.rng.choice((",", "", ";"))
    segs: list[Seg] = []
    for i, name in enumerate(names):
        if i and sep:
            segs.append(Seg(sep))
        low, high, dec = RANGES[LAB_PANEL[name]]
        segs += [Seg(style(ctx, name), "test"), Seg(number(ctx, low, high, dec))]
    return segs


def _vital_value(ctx: NoteContext, key: str) -> str:
    r = ctx.rng
    if key == "temp":
        return f"{r.uniform(96.0, 103.2):.1f}"
    if key == "bp":
        return f"{r.randint(78, 196)}/{r.randint(38, 110)}"
    if key == "sat":
        support = r.choice(("ra", "on ra", "on 2l nc", "on 4l", "on 40 % fio2", "on nrb", ""))
        return f"{r.randint(84, 100)} % {support}".strip()
    return str(r.randint(55, 135) if key == "hr" else r.randint(10, 34))


def _vitals(ctx: NoteContext, arg: str) -> list[Seg]:
    items = [v for v in VITALS if ctx.chance(0.88)] or list(VITALS[:2])
    sep = ctx.rng.choice((",", "", ""))
    segs: list[Seg] = []
    for i, (names, key) in enumerate(items):
        if i and sep:
            segs.append(Seg(sep))
        segs += [Seg(ctx.rng.choice(names), "test"), Seg(_vital_value(ctx, key))]
    return segs


def _med_line(ctx: NoteContext, arg: str, drug: str | None = None) -> list[Seg]:
    drug = drug or drug_phrase(ctx, arg or None)
    r = ctx.rng
    dose = f"{r.choice((0.5, 1, 2, 5, 10, 12.5, 20, 25, 40, 50, 81, 100, 250, 325, 500, 650))}"
    unit, route, freq = r.choice(DOSE_UNITS), r.choice(ROUTES), r.choice(FREQUENCIES)
    if ctx.chance(1 - ctx.profile.terse):
        form = r.choice(DOSE_FORMS)
        text = f"{dose} {unit} {form} sig : one ( 1 ) {form.split(' , ')[0]} {route} {freq} ."
    else:
        text = f"{dose} {unit} {route} {freq}"
    return [*entity_segs(drug, "treatment"), Seg(text)]


def _home_med_line(ctx: NoteContext, arg: str) -> list[Seg]:
    start_patient(ctx)
    return _med_line(ctx, arg, _next(ctx, "meds", ctx.home_meds))


def _words(options: tuple[str, ...]) -> Slot:
    return lambda ctx, arg: [Seg(ctx.rng.choice(options))]


def _value(ctx: NoteContext, arg: str) -> list[Seg]:
    low, high, dec = RANGES.get(arg or "dose", RANGES["dose"])
    return [Seg(number(ctx, low, high, dec))]


def _duration(ctx: NoteContext, arg: str) -> list[Seg]:
    unit = ctx.rng.choice(("days", "weeks", "months", "hours", "day", "week"))
    n = 1 if unit in ("day", "week") else ctx.rng.randint(2, 10)
    return [Seg(f"{n} {unit}")]


def _filler(ctx: NoteContext, arg: str) -> list[Seg]:
    return [Seg(ctx.rng.choice(NON_ENTITY_FILLERS))]


SLOTS: dict[str, Slot] = {
    **{f"{det}{name}": _one(name, det) for name in ENTITY_MAKERS for det in ("", "a", "p")},
    **{f"{code}S": _entity_list(code) for code in PHRASERS},
    "PMHS": _history_list,
    "HOMEMED": _home_med_line,
    "E": _any_entity,
    "L": _lab,
    "LABS": _lab_panel,
    "VITALS": _vitals,
    "MED": _med_line,
    "pron": lambda ctx, arg: [Seg(ctx.pron)],
    "poss": lambda ctx, arg: [Seg(ctx.poss)],
    "sexw": lambda ctx, arg: [
        Seg(
            ctx.rng.choice(("man", "male", "gentleman"))
            if ctx.sex == "M"
            else ctx.rng.choice(("woman", "female", "lady"))
        )
    ],
    "sex": lambda ctx, arg: [Seg(ctx.sex.lower())],
    "age": lambda ctx, arg: [Seg(str(ctx.age))],
    "date": lambda ctx, arg: [Seg(date_text(ctx, int(arg or 0) + ctx.rng.randint(0, 3)))],
    "year": lambda ctx, arg: [Seg(str(ctx.admit.year - ctx.rng.randint(1, 15)))],
    "time": lambda ctx, arg: [
        Seg(f"{ctx.rng.randint(0, 23):02d}:{ctx.rng.choice(('00', '15', '30', '45'))}")
    ],
    "num": _value,
    "dur": _duration,
    "FILL": _filler,
    "n": lambda ctx, arg: [Seg(str(ctx.rng.randint(2, 6)))],
    "dr": lambda ctx, arg: [Seg(f"dr. {ctx.rng.choice(SURNAMES)}")],
    "svc": _words(SERVICES),
    "hosp": _words(HOSPITALS),
}


@lru_cache(maxsize=2048)
def parse(template: str) -> tuple[tuple[str, str, str, str], ...]:
    """Split a template into ``(kind, a, b, assertion)`` parts: ``lit``, ``slot`` (name, arg),
    ``ent`` (type, alternatives), ``alt``; ``assertion`` is a slot's or mention's ``!assertion``."""
    parts: list[tuple[str, str, str, str]] = []
    for piece in _MARKUP.split(template):
        if not _MARKUP.fullmatch(piece):
            if piece.strip():
                parts.append(("lit", piece.strip(), "", ""))
            continue
        if piece[0] == "<":
            parts.append(("alt", piece[1:-1], "", ""))
            continue
        head, _, rest = piece[1:-1].partition(":")
        name, _, assertion = head.partition("!")
        if assertion and assertion not in ASSERTIONS:
            raise ValueError(f"unknown assertion {assertion!r} in template {template!r}")
        if piece[0] == "{" and name not in SLOTS:
            raise ValueError(f"unknown slot {{{name}}} in template {template!r}")
        if piece[0] == "[" and name not in ENTITY_TYPES:
            raise ValueError(f"unknown entity type {name!r} in template {template!r}")
        parts.append(("slot" if piece[0] == "{" else "ent", name, rest, assertion))
    return tuple(parts)


def render(ctx: NoteContext, template: str) -> Line:
    """Fill a template into a line of segments (entity mentions typed)."""
    line: Line = []
    for kind, a, b, assertion in parse(template):
        if kind == "lit":
            line.append(Seg(a))
        elif kind in ("slot", "ent"):
            if kind == "slot":
                ctx.asserting = assertion  # a negated slot names no problem the patient has
                segs = SLOTS[a](ctx, b)
                ctx.asserting = ""
            else:
                term = ctx.rng.choice(b.split("~"))
                segs = entity_segs(SEP.join(style(ctx, w) for w in term.split(SEP)), a)
            for seg in segs:
                if seg.type == "problem" and assertion:
                    seg.assertion = assertion
            line.extend(segs)
        else:
            words = ctx.rng.choice(a.split("~"))
            if words:
                line.append(Seg(words))
    return _determiners_inside([seg for seg in line if seg.text.strip()])


_DETERMINERS = frozenset(("a", "an", "the", "his", "her"))


def _determiners_inside(line: Line) -> Line:
    """Move a determiner written just before a mention (``{poss} [test:creatinine]``) into it."""
    for i in range(1, len(line)):
        prev, seg = line[i - 1], line[i]
        words = prev.text.split(" ")
        if seg.type and not prev.type and words[-1] in _DETERMINERS:
            seg.text = f"{words[-1]} {seg.text}"
            prev.text = " ".join(words[:-1])
    return [seg for seg in line if seg.text.strip()]
