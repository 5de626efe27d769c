"""podtui: a terminal dashboard for training models on rented GPU pods."""

__version__ = "0.1.0"
