"""fedskip.privacy."""
