"""Shared pytest options: ``--live`` enables the tests marked ``live`` (real Hydra endpoint)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--live",
        action="store_true",
        default=False,
        help="run the tests marked live (real Hydra endpoint; needs SMALLEST_API_KEY)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--live"):
        return
    skip = pytest.mark.skip(reason="live test: run with --live and SMALLEST_API_KEY set")
    for item in items:
        if item.get_closest_marker("live") is not None:  # the marker, not a test id or name
            item.add_marker(skip)
