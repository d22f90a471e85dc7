"""Shared fixtures (a practice in a temp folder, a clean structlog set-up per test) and the `integration` marker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.practice import Practice


@pytest.fixture
def practice(tmp_path: Path) -> Practice:
    """A small practice on disk with the default made-up clients and an empty calendar."""
    return Practice(tmp_path / "practice")


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


_INTEGRATION = Path(__file__).resolve().parent / "integration"


def pytest_itemcollected(item: pytest.Item) -> None:
    """Every test under tests/integration carries the `integration` marker, whatever its module says."""
    if _INTEGRATION in item.path.parents:
        item.add_marker(pytest.mark.integration)


@pytest.hookimpl(trylast=True)  # after pytest has grouped the tests by their fixtures
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist, hand the slow tests out first.

    Each xdist worker collects the same list and must order it the same way; sending the few long
    tests out first keeps one of them from starting last while the other workers sit idle.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: slow first
