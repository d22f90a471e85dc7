"""Shared fixtures: a practice in a temp folder, and a clean structlog set-up per test."""

from __future__ import annotations

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
