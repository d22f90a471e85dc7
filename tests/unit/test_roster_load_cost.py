"""Loading a large roster does not look up TOML line numbers for clients without a problem."""

from __future__ import annotations

from pathlib import Path

import pytest

import worker.config as config_module


def test_a_clean_roster_costs_no_line_lookups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each line lookup reads the whole roster text: with 300 clean clients there is none (it was one per client)."""
    roster = tmp_path / "clients.toml"
    roster.write_text(
        "".join(f'[[clients]]\nid = "c{n:03d}"\nname = "Client Number{n:03d}"\n\n' for n in range(300)),
        encoding="utf-8",
    )
    calls: list[object] = []
    original = config_module._line_of

    def counting(text: str, loc: tuple[int | str, ...]) -> int | None:
        calls.append(loc)
        return original(text, loc)

    monkeypatch.setattr(config_module, "_line_of", counting)
    clients, _ = config_module._load_roster(roster)
    assert len(clients) == 300
    assert calls == []
