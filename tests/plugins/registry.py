"""Fixtures: see the module docstring once written."""
