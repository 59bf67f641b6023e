"""fedskip.selection."""
