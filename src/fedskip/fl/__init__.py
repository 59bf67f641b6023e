"""fedskip.fl."""
