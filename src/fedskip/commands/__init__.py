"""Subcommands of the ``fedskip`` CLI; see :mod:`fedskip.cli`."""
