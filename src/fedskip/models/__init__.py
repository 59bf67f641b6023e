"""fedskip.models."""
