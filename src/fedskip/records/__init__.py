"""A run's records, without Flower: the run directory (:mod:`~fedskip.records.rundir`), the row
and summary schema (:mod:`~fedskip.records.schema`) and the server checkpoint
(:mod:`~fedskip.records.checkpoint`).

Every method writes through this package and ``bench`` reads through it; it imports nothing of
``federation``, ``fl``, ``runs``, ``bench``, ``commands`` or ``deploy``.
"""
