"""fedskip.deploy."""
