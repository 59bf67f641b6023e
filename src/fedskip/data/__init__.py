"""fedskip.data."""
