"""Clinical term pools by entity type and clinical domain (``data/lexicon.json``).

Each pool lists surface forms (lowercase) roughly from most to least frequent: the generator
samples them with a Zipf-like law, so the first terms recur across notes and the tail appears
only once or twice (which gives the test split surface forms never seen in training).
Domains are shared by the three types so that a site's specialty mix can weight them all:
``cardio``, ``onc``, ``icu``, ``general``, ``renal``, ``neuro``, ``gi``, ``id``; problems also
have ``exam`` (physical-exam findings) and ``allergy``, tests ``lab``, ``imaging``, ``vitals``.
"""

from __future__ import annotations

from fedskip.data.synth.datafiles import load, pools

_LEXICON = load("lexicon.json")
PROBLEMS = pools(_LEXICON["problems"])
TESTS = pools(_LEXICON["tests"])
TREATMENTS = pools(_LEXICON["treatments"])
NON_DRUG_TREATMENTS = frozenset(_LEXICON["treatments_not_drugs"])
"""Procedures, devices and therapies among the treatments; the rest are drugs."""
DRUGS = {
    d: tuple(t for t in pool if t not in NON_DRUG_TREATMENTS) for d, pool in TREATMENTS.items()
}
PROCEDURES = {
    d: tuple(t for t in pool if t in NON_DRUG_TREATMENTS) for d, pool in TREATMENTS.items()
}
