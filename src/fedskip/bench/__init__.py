"""Benchmark suites and reports.

``suites`` (what a suite trains) → ``runner`` (train each config with ``fedskip run``'s functions,
resumable) → ``records`` (read run directories) → ``table`` (results rows: gap to centralized,
MB, reduction vs FedAvg, rounds to 95%) → ``claims`` (the paper's claims checked on the rows) →
``plots`` / ``report`` (``results.md``, ``report.md``, PNGs). ``frontier`` adds the
k x LoRA rank x compression group through :func:`fedskip.bench.suites.register_group`.
"""
