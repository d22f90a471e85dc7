"""Crash safety (SIGKILL at any write) and the run lock, with real processes."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.ical import read_item
from tests.integration.state_backends import statuses
from tests.practice import ClientSpec, Practice, local, vevent
from worker.cli import main
from worker.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
NOWS = ["2026-03-11T08:00:00-05:00", "2026-03-12T08:00:00-05:00"]


def _busy_practice(root: Path, state_url: str = "") -> Practice:
    clients = [ClientSpec(f"c{n:03d}", f"Client Number{n:03d}") for n in range(30)]
    practice = Practice(root, clients=clients, state_url=state_url)
    for n in range(30):
        cid = f"c{n:03d}"
        practice.add(
            f"{cid}-missed",
            vevent(
                f"{cid}-missed",
                f"Client Number{n:03d} DNA",
                local("2026-03-09 09:00") + (n % 8) * (local("2026-03-09 10:00") - local("2026-03-09 09:00")),
            ),
        )
        if n % 3 == 0:
            practice.add(
                f"{cid}-next", vevent(f"{cid}-next", f"Client Number{n:03d}", local("2026-03-20 09:00"))
            )
    return practice


def _child(practice: Practice, now: str, hook: str, n: int) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.crash_child", str(practice.config), now, hook, str(n)],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return proc.returncode


def _plan(practice: Practice, now: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, str]]:
    capsys.readouterr()
    assert main(["--config", str(practice.config), "plan", "--json", "--now", now]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("state_backend", ["sqlite", "postgresql"], indirect=True)
def test_sigkill_at_random_writes_never_duplicates(
    tmp_path: Path, state_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed 50 times at random writes (on either state backend), one more pass leaves one
    reminder per due need and state consistent with the sink."""
    practice = _busy_practice(tmp_path / "p", state_url)
    rng = random.Random(20261127)
    killed = 0
    for attempt in range(50):
        now = NOWS[attempt % 2]
        if attempt == 25:
            # the therapist books two clients in the middle of the crashes: withdrawals too
            practice.add("c001-next", vevent("c001-next", "Client Number001", local("2026-03-19 09:00")))
            practice.add("c002-next", vevent("c002-next", "Client Number002", local("2026-03-19 10:00")))
        # every pass has new work: two more missed appointments (four writes, four records)
        for extra in range(2):
            n = rng.randrange(30)
            uid = f"extra-{attempt}-{extra}"
            start = local(f"2026-03-{rng.randint(2, 10):02d} {rng.randint(9, 16):02d}:00")
            practice.add(uid, vevent(uid, f"Client Number{n:03d} no show", start))
        code = _child(practice, now, rng.choice(["sink", "landed", "state"]), rng.randint(1, 4))
        killed += code == -signal.SIGKILL
    assert killed >= 40  # most runs really died mid-pass
    assert main(["--config", str(practice.config), "run", "--once", "--now", NOWS[1]]) == 0
    due = [x for x in _plan(practice, NOWS[1], capsys) if x["state"] == "due"]
    assert due and all(x["action"] == "keep" for x in due)
    settings = load_settings(practice.config)
    files: dict[tuple[str, str], str] = {}
    for folder, kind in ((practice.events_dir, "event"), (practice.tasks_dir, "task")):
        assert not list(folder.glob(".callsheet-*.tmp")), "temporary files left behind"
        for path in folder.glob("*.ics"):
            item = read_item(path.read_bytes(), ref=str(path))
            assert item is not None and item.kind == kind
            assert (item.key, kind) not in files
            files[(item.key, kind)] = item.status
    wanted = {(x["key"], kind) for x in due for kind in ("event", "task")}
    assert {k for k, status in files.items() if status == "open"} == wanted
    open_rows = {slot for slot, status in statuses(settings).items() if status == "open"}
    assert open_rows == wanted


def test_two_passes_at_once_one_skips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two `run --once` started together: one passes, the other says it skipped, both exit 0."""
    practice = _busy_practice(tmp_path / "p")
    settings = load_settings(practice.config)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # hold the lock from a third process while two passes start, then release it
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pathlib import Path; from worker.state import run_lock\n"
                f"with run_lock(Path({str(settings.state_dir)!r})):\n"
                "    print('locked', flush=True); time.sleep(3)\n"
            ),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    cmd = [
        sys.executable,
        "-m",
        "worker.cli",
        "--config",
        str(practice.config),
        "run",
        "--once",
        "--now",
        NOWS[0],
    ]
    blocked = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    holder.wait(timeout=10)
    holder.stdout.close()
    assert blocked.returncode == 0
    assert "another pass is running" in blocked.stderr
    assert not practice.events_dir.exists()
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=60) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0
    skipped = sum("another pass is running" in err for _out, err in outs)
    wrote = sum("reminders written" in out for out, _err in outs)
    assert skipped + wrote == 2 and wrote >= 1
    due = [x for x in _plan(practice, NOWS[0], capsys) if x["state"] == "due"]
    assert len(due) == 39  # 30 missed appointments and 9 double bookings on the 20th
    assert all(x["action"] == "keep" for x in due)
    assert len(list(practice.events_dir.glob("*.ics"))) == 39
