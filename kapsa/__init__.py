"""Kapsa: run apps from Git on Kubernetes."""

__version__ = "0.1.0"
