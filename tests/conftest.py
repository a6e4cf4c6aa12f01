"""Fixtures shared by the whole suite: one control plane, real servers, a namespace per test."""

pytest_plugins = [
    "tests.plugins.cluster",
    "tests.plugins.gitserver",
    "tests.plugins.registry",
    "tests.plugins.postgres",
]
