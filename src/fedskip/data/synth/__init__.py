"""Synthetic multi-hospital clinical corpus: the embedded default dataset (``data=synth``).

``write_corpus(out, sites=4, docs=60, seed=42, label_noise=0.02)`` writes i2b2 2010 NER folders
and MIMIC-III-style classification CSVs per site; ``ensure_synth(cfg)`` returns a cached copy.
Vocabulary and templates are package data (``data/*.json``, loaded once by ``datafiles.py``);
hospital profiles live in ``sites.py``, the template language in ``slots.py``, note and patient
structure in ``notes.py`` and ``generate.py``.
"""

from fedskip.data.synth.cache import cache_root, corpus_key, ensure_synth
from fedskip.data.synth.generate import GENERATOR_VERSION
from fedskip.data.synth.writers import write_corpus

__all__ = ["GENERATOR_VERSION", "cache_root", "corpus_key", "ensure_synth", "write_corpus"]
