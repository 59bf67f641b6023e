"""fedskip.train."""
