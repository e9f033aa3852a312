"""forgather: a distributed-first launcher and trainer for pretraining small and medium LLMs."""

__version__ = "0.1.0"
