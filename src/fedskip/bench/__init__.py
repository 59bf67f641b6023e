"""Benchmark suites and reports.

``spec`` (what a suite is: settings, a sweep of axes, extra groups) → ``suites`` (the catalogue:
every suite, and the ``groups`` each adds beyond its axes) → ``expansion`` (a suite's run
configurations) → ``runner`` (train each config with ``fedskip run``'s functions, resumable) →
``records`` (read run directories) → ``table`` (results rows: gap to centralized, MB,
reduction vs FedAvg, rounds to 95%) → ``claims`` (the paper's claims checked on the rows) →
``plots`` / ``report`` (``results.md``, ``report.md``, PNGs); ``frontier`` and
``personalization`` render the tables of those two groups.
"""
