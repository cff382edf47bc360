"""mvmodel: the MultiviewVLM model, its training, embedding and query jobs."""

__version__ = "0.1.0"
