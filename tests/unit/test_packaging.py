"""The deployment files say what the code expects: entry point, paths, schedule, health check."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from worker.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _instructions(name: str) -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM ") :]  # the runtime stage
    return [line for line in final.splitlines() if line.startswith(f"{name} ")]


def test_dockerfile_runs_the_loop_as_non_root() -> None:
    """The image's entry point is the console script, the default command the 5-minute loop, as a non-root user."""
    (entry,) = _instructions("ENTRYPOINT")
    (cmd,) = _instructions("CMD")
    assert json.loads(entry.removeprefix("ENTRYPOINT ")) == ["callsheet"]
    assert json.loads(cmd.removeprefix("CMD ")) == ["run", "--every", "5m"]
    (user,) = _instructions("USER")
    assert user.split()[1] not in {"root", "0"}
    (volume,) = _instructions("VOLUME")
    assert set(json.loads(volume.removeprefix("VOLUME "))) == {"/state", "/config"}
    text = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["callsheet", "check", "--health"]' in text
    assert "CALLSHEET_CONFIG=/config/config.toml" in text


def test_console_script_is_declared() -> None:
    """pyproject declares the `callsheet` console script the image and the units call."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["callsheet"] == "worker.cli:main"


def test_image_paths_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With only CALLSHEET_CONFIG set, as in the image, the health check finds config and state."""
    (tmp_path / "calendar").mkdir()
    (tmp_path / "config.toml").write_text(
        f'roster = "clients.toml"\nstate_dir = "{tmp_path / "state"}"\n[practice]\ntimezone = "UTC"\n[source]\nkind = "vdir"\npath = "calendar"\n'
        '[reminders]\nkind = "vdir"\nevents_path = "out"\n'
    )
    (tmp_path / "clients.toml").write_text("")
    monkeypatch.setenv("CALLSHEET_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.chdir(tmp_path / "calendar")
    assert main(["check", "--health"]) == 1  # no pass yet: unhealthy, but it found its config
    assert main(["run", "--once"]) == 0
    assert main(["check", "--health"]) == 0
    assert "healthy" in capsys.readouterr().out


def test_systemd_units_run_one_pass_every_five_minutes() -> None:
    """The service runs one pass; the timer starts it every five minutes."""
    service = (ROOT / "scripts/systemd/callsheet.service").read_text()
    timer = (ROOT / "scripts/systemd/callsheet.timer").read_text()
    (exec_start,) = re.findall(r"^ExecStart=(.*)$", service, re.M)
    assert exec_start.split()[-2:] == ["run", "--once"]
    assert "Type=oneshot" in service and "UMask=0077" in service
    assert "OnUnitActiveSec=5min" in timer
