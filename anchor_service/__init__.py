"""anchor-service: anchored alignment of self-explanations (arXiv 2410.13216) on Ray."""

__version__ = "0.1.0"
