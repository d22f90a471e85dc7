"""The group practice loop: accounts run concurrently (bounded by run.concurrency), each on its
own interval; a slow or failing account neither stops nor delays the others."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.scenarios.test_group_practice import group
from worker import runner
from worker.config import load_accounts


def test_a_slow_account_does_not_delay_a_fast_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While okafor's pass hangs, rivera finishes three passes on its 1s interval (each account's
    pass in a thread of its own, both at once)."""
    accounts = load_accounts(group(tmp_path))
    real = runner.run_pass
    release = threading.Event()
    passes: dict[str, int] = {"rivera": 0, "okafor": 0}
    active = 0
    most = 0
    lock = threading.Lock()

    def pass_(settings, now, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        try:
            if settings.account == "okafor":
                release.wait(20)
            outcome = real(settings, now, **kwargs)
            passes[settings.account] += 1
            return outcome
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(runner, "run_pass", pass_)

    stop = runner.Stop()
    done = threading.Thread(
        target=runner.loop_accounts,
        args=(accounts, timedelta(seconds=1)),
        kwargs={"stop": stop, "clock": lambda: datetime.now(UTC)},
    )
    started = time.monotonic()
    done.start()
    while passes["rivera"] < 3 and time.monotonic() - started < 15:
        time.sleep(0.05)
    assert passes["rivera"] >= 3 and passes["okafor"] == 0
    release.set()
    stop.event.set()
    done.join(20)
    assert not done.is_alive()
    assert most == 2
    assert (tmp_path / "var" / "rivera" / "health.json").exists()


def test_a_failing_account_keeps_failing_alone(tmp_path: Path) -> None:
    """With okafor's calendar missing, two rounds of the loop leave rivera healthy twice and
    okafor failed, each in its own health.json."""
    accounts = load_accounts(group(tmp_path, broken=True))
    assert runner.loop_accounts(accounts, timedelta(seconds=1), max_passes=2) == 0

    rivera = json.loads((tmp_path / "var" / "rivera" / "health.json").read_text())
    okafor = json.loads((tmp_path / "var" / "okafor" / "health.json").read_text())
    assert rivera["outcome"] == "ok" and okafor["outcome"] == "failed"


def test_no_more_passes_at_once_than_run_concurrency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four accounts with run.concurrency = 2: every account's pass runs, never more than two at once."""
    rivera, okafor = load_accounts(group(tmp_path))
    bound = rivera.run.model_copy(update={"concurrency": 2})
    accounts = [
        replace(
            base, account=f"{base.account}{n}", state_dir=tmp_path / "var" / f"{base.account}{n}", run=bound
        )
        for base in (rivera, okafor)
        for n in (1, 2)
    ]
    active = most = 0
    lock = threading.Lock()
    ran: list[str] = []

    def pass_(settings, now, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.3)
        with lock:
            active -= 1
            ran.append(settings.account)
        raise runner.ConnectorError("made up", operation="read")

    monkeypatch.setattr(runner, "run_pass", pass_)
    results = runner.run_accounts(accounts, datetime.now(UTC), record=False)
    assert sorted(ran) == sorted(a.account for a in accounts) and most == 2
    assert [r.settings.account for r in results] == [a.account for a in accounts]
    assert all(isinstance(r.error, runner.ConnectorError) for r in results)
