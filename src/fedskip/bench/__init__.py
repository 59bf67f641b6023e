"""fedskip.bench."""
