"""Non-lexicon vocabulary (``data/vocab.json``): abbreviations, misspellings, span modifiers,
units, routes, places and names. Everything here is data; behaviour lives in ``text.py``."""

from __future__ import annotations

from fedskip.data.synth.datafiles import load, pools, strings

_V = load("vocab.json")
ABBREVIATIONS = pools(_V["abbreviations"])
MISSPELLINGS = pools(_V["misspellings"])
PROBLEM_PREFIXES = strings(_V["problem_prefixes"])
"""Modifiers i2b2 keeps inside a problem span (``c="severe chest pain"``)."""
LOCATIONS = strings(_V["locations"])
LOCATIONS_START = strings(_V["locations_start"])
LOCATABLE = frozenset(_V["locatable"])
ANATOMY = strings(_V["anatomy"])
MODALITIES = frozenset(_V["modalities"])
SIZEABLE = frozenset(_V["sizeable"])
STAGEABLE = frozenset(_V["stageable"])
COUNTABLE = frozenset(_V["countable"])
"""Head nouns that take ``a``/``an`` (``a rash``); other heads take ``the`` or a possessive."""
DRUG_FORMS = strings(_V["drug_forms"])
NON_PREFIXABLE = strings(_V["non_prefixable"])
QUANTIFIERS = strings(_V["quantifiers"])
"""Quantifiers i2b2 keeps inside a span before a plural (``c="several pulmonary nodules"``)."""
TREATMENT_PREFIXES = strings(_V["treatment_prefixes"])
TEST_PREFIXES = strings(_V["test_prefixes"])
DOSE_UNITS = strings(_V["dose_units"])
ROUTES = strings(_V["routes"])
FREQUENCIES = strings(_V["frequencies"])
DOSE_FORMS = strings(_V["dose_forms"])
SERVICES = strings(_V["services"])
"""Consult services and places: medical words that are not entities (``ct surgery``)."""
SURNAMES = strings(_V["surnames"])
HOSPITALS = strings(_V["hospitals"])
NON_ENTITY_FILLERS = strings(_V["non_entity_fillers"])
