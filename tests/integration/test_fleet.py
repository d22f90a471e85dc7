"""`callsheet worker` processes sharing a group practice's accounts through Procrastinate on a
real PostgreSQL (tests/integration/conftest.py `pg_server`): every account passed every cycle,
never twice at once, no duplicate reminder, no lost tombstone, also with a worker SIGKILLed
mid-pass."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PgServer
from tests.practice import TZ, TZ_NAME, roster_toml, vcalendar, vevent
from tests.scenarios.test_group_practice import CLIENTS
from worker import fleet, runner
from worker.cli import main
from worker.config import load_accounts
from worker.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def fleet_practice(root: Path, state_url: str, accounts: int, every: str) -> Path:
    """`accounts` small accounts (own calendar folder, roster and reminder folders; two
    acquainted clients booked back to back in three days: one call), state in `state_url`."""
    day = (datetime.now(TZ) + timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
    text = (
        f'state_dir = "var"\nstate_url = "{state_url}"\n\n[run]\nevery = "{every}"\n\n'
        f'[practice]\ntimezone = "{TZ_NAME}"\ntherapist_name = "Group"\ncallback_number = "+1 555 0100"\n\n'
    )
    (root / "rosters").mkdir(parents=True)
    for i in range(accounts):
        name = f"a{i:02d}"
        calendar = root / "calendars" / name
        calendar.mkdir(parents=True)
        (calendar / "x1.ics").write_text(vcalendar(vevent("x1", "Avery Quinn", day)), encoding="utf-8")
        (calendar / "x2.ics").write_text(
            vcalendar(vevent("x2", "Blake Rowe", day + timedelta(minutes=55))), encoding="utf-8"
        )
        roster = root / "rosters" / f"{name}.toml"
        fd = os.open(roster, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(roster_toml(CLIENTS))
        text += (
            f'[[accounts]]\nname = "{name}"\nroster = "rosters/{name}.toml"\n'
            f'[accounts.source]\nkind = "vdir"\npath = "calendars/{name}"\n'
            f'[accounts.reminders]\nkind = "vdir"\nevents_path = "out/{name}/calls"\n'
            f'tasks_path = "out/{name}/tasks"\n\n'
        )
    config = root / "config.toml"
    config.write_text(text, encoding="utf-8")
    return config


@dataclass
class Worker:
    """One `callsheet worker` process and its log file."""

    proc: subprocess.Popen[bytes]
    log: Path
    killed_at: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def read(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by SIGKILL
                    continue
        self.events = out
        return out

    def running(self) -> dict[str, float]:
        """The passes started in this worker and not finished yet: account -> start time."""
        open_: dict[tuple[str, int], float] = {}
        for e in self.read():
            key = (e.get("account", ""), e.get("slot", 0))
            if e["event"] == "fleet.pass_started":
                open_[key] = e["at"]
            elif e["event"] in ("fleet.pass_done", "fleet.pass_skipped"):
                open_.pop(key, None)
        return {account: at for (account, _slot), at in open_.items()}

    def running_pass(self) -> bool:
        """A pass started in this worker and not finished yet."""
        return bool(self.running())


def start_worker(config: Path, folder: Path, n: int, *, concurrency: int) -> Worker:
    log = folder / f"worker{n}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "worker.cli",
                "--config",
                str(config),
                "worker",
                "--tick",
                "1",
                "--concurrency",
                str(concurrency),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
    return Worker(proc, log)


def stop(workers: list[Worker]) -> None:
    for w in workers:
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()


def reminder_files(root: Path) -> dict[str, list[str]]:
    return {
        account.name: sorted(p.name for p in account.rglob("*.ics"))
        for account in sorted((root / "out").iterdir())
    }


def check_fleet(workers: list[Worker], accounts: int, began: float, ended: float, gap: float) -> int:
    """The fleet's passes: never two of one account at once, none more than `gap` apart (from
    the start to the end). Returns the number of completed passes."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    starts: dict[str, list[float]] = defaultdict(list)
    for w in workers:
        opened: dict[tuple[str, int], float] = {}
        for e in w.read():
            key = (e.get("account", ""), e.get("slot", 0))
            if e["event"] == "fleet.pass_started":
                opened[key] = e["at"]
            elif e["event"] == "fleet.pass_done":
                assert e["status"] == "ok", e
                spans[key[0]].append((e["since"], e["at"]))
                starts[key[0]].append(e["since"])
                opened.pop(key, None)
            elif e["event"] == "fleet.pass_skipped":
                opened.pop(key, None)
        for (account, _slot), since in opened.items():  # cut short by SIGKILL
            assert w.killed_at is not None
            spans[account].append((since, w.killed_at))
    assert sorted(starts) == [f"a{i:02d}" for i in range(accounts)]
    for account, intervals in spans.items():
        intervals.sort()
        for (_s1, e1), (s2, _e2) in itertools.pairwise(intervals):
            assert s2 >= e1, f"{account}: two passes at once"
    for account, moments in starts.items():
        points = [began, *sorted(moments), ended]
        worst = max(b - a for a, b in itertools.pairwise(points))
        assert worst <= gap, f"{account}: {worst:.1f}s without a pass"
    return sum(len(v) for v in starts.values())


def test_due_slots_tile_time() -> None:
    """Over consecutive ticks each account is due exactly once per interval, at its own offset."""
    every, tick = 7.0, 1
    for account in ("a00", "a01", "rivera"):
        slots = [s for t in range(1000, 1070) if (s := fleet.due_slot(account, every, t, tick)) is not None]
        assert len(slots) == 10
        assert all(b - a == 7 for a, b in itertools.pairwise(slots))


def test_worker_needs_postgresql(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`callsheet worker` on a SQLite state exits 2 naming state_url."""
    config = fleet_practice(tmp_path, "", 2, "5m").read_text().replace('state_url = ""\n', "")
    (tmp_path / "config.toml").write_text(config)
    assert main(["--config", str(tmp_path / "config.toml"), "worker"]) == 2
    assert "state_url" in capsys.readouterr().err


def test_two_workers_share_the_accounts(tmp_path: Path, pg_server: PgServer) -> None:
    """Two workers (after `state init`) serve eight accounts on a 2 s interval: each account
    passes every cycle, never twice at once, and writes its one call once."""
    config = fleet_practice(tmp_path, pg_server.database(), 8, "2s")
    assert main(["--config", str(config), "state", "init"]) == 0
    began = time.time()
    workers = [start_worker(config, tmp_path, n, concurrency=2) for n in range(2)]
    try:
        time.sleep(9)
    finally:
        stop(workers)
    ended = time.time()
    for w in workers:
        assert w.proc.returncode == 0, w.log.read_text()[-2000:]
    passes = check_fleet(workers, 8, began + 3, ended - 3, gap=2 + 2.5)
    assert passes >= 8 * 3
    assert all(len([e for e in w.events if e["event"] == "fleet.pass_done"]) > 0 for w in workers)
    files = reminder_files(tmp_path)
    assert all(len(names) == 2 for names in files.values()) and len(files) == 8
    assert len({tuple(v) for v in files.values()}) == 1  # the same call, by its key, in every account


def plan_states(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, list[str]]:
    """The `state` of every need in `plan --json` of every account, by account."""
    capsys.readouterr()
    assert main(["--config", str(config), "plan", "--json"]) == 0
    states: dict[str, list[str]] = defaultdict(list)
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("{"):
            need = json.loads(line)
            states[need["account"]].append(need["state"])
    return states


def handle(root: Path, account: str) -> None:
    """The therapist deletes the account's call event: handled, a tombstone from then on."""
    (event,) = (root / "out" / account / "calls").iterdir()
    event.unlink()


@pytest.mark.slow
def test_three_workers_one_killed_mid_pass(
    tmp_path: Path, pg_server: PgServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three workers share 60 accounts on a 4 s interval; one is SIGKILLed while it runs the pass
    that records a just-deleted reminder as handled: every account still passes every cycle (the
    killed pass's account within one more), never twice at once, no reminder is written twice and
    every reminder the therapist handled (deleted) stays handled: its tombstone is in the state."""
    accounts = 60
    config = fleet_practice(tmp_path, pg_server.database(), accounts, "4s")
    # the workers apply the queue's schema themselves on start (no `state init` here)
    assert main(["--config", str(config), "run", "--once"]) == 0
    before = reminder_files(tmp_path)
    assert len(before) == accounts and all(len(names) == 2 for names in before.values())
    handled_first = ["a03", "a11", "a27", "a58"]  # deleted before the workers start
    handled_later = [f"a{i:02d}" for i in range(30, 50)]  # deleted in the second cycle, under the kill
    for name in handled_first:
        handle(tmp_path, name)
    began = time.time()
    workers = [start_worker(config, tmp_path, n, concurrency=3) for n in range(3)]
    try:
        victim = workers[0]
        time.sleep(5)  # the workers are up and the first cycle ran
        deleted_at = time.time()
        for name in handled_later:
            handle(tmp_path, name)
        # kill the victim in a pass of an account whose deletion it has to record
        deadline = time.time() + 15
        target: list[str] = []
        while time.time() < deadline and not target:
            running = victim.running()
            target = [a for a, at in running.items() if a in handled_later and at >= deleted_at]
            if not target:
                time.sleep(0.002)
        victim.proc.send_signal(signal.SIGKILL)
        victim.killed_at = time.time()
        victim.proc.wait()
        assert target, "the victim ran no pass of a just-handled account"
        time.sleep(16)  # past the stalled-worker timeout: the killed pass is queued again or superseded
    finally:
        stop(workers)
    ended = time.time()
    for w in workers[1:]:
        assert w.proc.returncode == 0, w.log.read_text()[-2000:]
    passes = check_fleet(workers, accounts, began + 5, ended - 5, gap=2 * 4 + 2.5)
    assert passes >= accounts * 4
    after = reminder_files(tmp_path)
    states = plan_states(config, capsys)
    for name, names in before.items():
        if name in handled_first or name in handled_later:
            assert after[name] == [n for n in names if n.endswith("-t1.ics")]  # the event stays deleted
            assert states[name] == ["handled"], name  # its tombstone is in the state
        else:
            assert after[name] == names  # nothing written twice, nothing lost
            assert states[name] == ["due"], name
    rescued = [
        e
        for w in workers[1:]
        for e in w.events
        if e["event"] in ("fleet.pass_requeued", "fleet.pass_superseded")
    ]
    assert victim.running_pass() and rescued  # the dead worker's pass was found and dealt with


def test_a_pass_sees_its_peers_and_clashes_only(tmp_path: Path) -> None:
    """Worked out once per worker: an account's pass sees itself, the accounts sharing its roster,
    and the account whose calendar its reminders would land in (which the pass then refuses)."""
    config = fleet_practice(tmp_path, "", 4, "5m")
    text = config.read_text().replace('state_url = ""\n', "")
    text = text.replace('events_path = "out/a00/calls"', 'events_path = "calendars/a01"')
    text = text.replace('roster = "rosters/a03.toml"', 'roster = "rosters/a02.toml"')
    config.write_text(text)
    accounts = load_accounts(config)
    circles = fleet.Fleet(accounts).circles()
    assert {k: [a.account for a in v] for k, v in circles.items()} == {
        "a00": ["a00", "a01"],
        "a01": ["a01"],
        "a02": ["a02", "a03"],
        "a03": ["a03", "a02"],
    }
    with pytest.raises(ConfigError, match="a01"):
        runner.check_peer_sources(accounts[0], circles["a00"])
    assert runner.peers_of(accounts[2], circles["a02"]) == (accounts[3],)


def test_passes_reuse_the_lock_connection(pg_server: PgServer) -> None:
    """Consecutive passes hold the account's advisory lock on one kept connection (no new
    PostgreSQL backend per pass: ~4 ms of the server's CPU each), and release it every time."""
    import psycopg

    from worker import state_pg

    url = pg_server.database()
    key = state_pg.lock_key("a01")  # a negative one: the query below gives the signed key
    query = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND (classid::bigint << 32 | objid::bigint) = %s"
    holders = []
    with psycopg.connect(pg_server.admin_url, autocommit=True) as watch:
        for _ in range(3):
            with state_pg.run_lock(url, "a01"):
                holders += [row[0] for row in watch.execute(query, (key,)).fetchall()]
            assert watch.execute(query, (key,)).fetchall() == []  # released
        with pytest.raises(RuntimeError), state_pg.run_lock(url, "a01"):
            raise RuntimeError("the pass failed")
        assert watch.execute(query, (key,)).fetchall() == []  # released after a failure too
    assert len(holders) == 3 and len(set(holders)) == 1, holders
    state_pg.close_pools()
