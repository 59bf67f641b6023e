"""fedskip: Layer-Skipping Federated Learning for clinical NLP (arXiv 2504.10536) on Flower."""

__version__ = "0.1.0"
