#!/usr/bin/env python3
"""Benchmark the start-up of a warm `callsheet run --once` on a local folder (issue 17).

A cron job or a systemd timer starts a fresh interpreter for every pass, so what a warm pass
costs on a small practice is mostly imports. For each tree (this working tree, and the tree of
`--ref` when given, extracted with `git archive`), in the same session and alternating, each
repeat runs in fresh processes:

- `-X importtime` of a warm `run --once`: the sum of the top-level imports' cumulative times
  after the interpreter is up (site and the editable-install finder are reported apart);
- the CPU time (user + sys of the child) and wall time of a warm `run --once` without importtime;
- `python -c pass`, the floor no Python program starts under.

The practice is `callsheet demo` (a dozen clients, a local folder), anchored at the clock so
that the timed passes run with the real clock, as cron runs them. Medians, and after/before
ratios when a ref is given.

    python scripts/bench_startup.py [--ref main] [--repeat 10] [--top 12]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "@@callsheet-start"
# what the console script does, with a mark on stderr once the interpreter is up
ENTRY = (
    f"import sys; sys.stderr.write({MARK!r} + '\\n'); sys.stderr.flush()\n"
    "from worker.cli import main\n"
    "sys.exit(main())\n"
)


@dataclass
class Tree:
    """One version of the code and its own copy of the demo practice."""

    name: str
    path: Path
    config: Path = Path()
    imports: list[float] = field(default_factory=list)  # ms
    site: list[float] = field(default_factory=list)  # ms
    cpu: list[float] = field(default_factory=list)  # ms
    wall: list[float] = field(default_factory=list)  # ms
    per_module: dict[str, list[float]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        # an installed callsheet runs from compiled bytecode: let the first run write it
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        return {**env, "PYTHONPATH": str(self.path)}


def _own_files(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
    """tarfile's "data" filter, leaving out a symlink to an absolute path (an old commit holds
    one, a venv link, which the filter would refuse for the whole archive)."""
    if member.issym() and member.linkname.startswith("/"):
        return None
    return tarfile.data_filter(member, path)


def _extract(ref: str, into: Path) -> Path:
    """The files of `ref` in a fresh folder (git archive: the repository is not touched)."""
    blob = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(blob.stdout)) as tar:
        tar.extractall(into, filter=_own_files)
    return into


def _run(tree: Tree, args: list[str], *, importtime: bool = False) -> tuple[float, float, str]:
    """Run one fresh process; its CPU time and wall time in ms, and its stderr."""
    flags = ["-X", "importtime"] if importtime else []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, *args], cwd=tree.path, env=tree.env(), capture_output=True, text=True
    )
    wall = (time.perf_counter() - began) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{tree.name}: {' '.join(args[:1])} exited {done.returncode}: {done.stderr[-600:]}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return cpu, wall, done.stderr


def _pass_args(tree: Tree) -> list[str]:
    return ["-c", ENTRY, "--config", str(tree.config), "run", "--once"]


def parse_importtime(stderr: str) -> tuple[float, float, dict[str, float]]:
    """From -X importtime: ms of the program's imports, ms of site, own ms per package (our modules apart)."""
    program = site = 0.0
    per: dict[str, float] = {}
    started = False
    for line in stderr.splitlines():
        if line == MARK:
            started = True
            continue
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            cumulative = int(parts[1]) / 1000
        except ValueError:
            continue  # the header line
        own = int(parts[0].rsplit(":", 1)[1]) / 1000
        name = parts[2]
        top = len(name) - len(name.lstrip(" ")) == 1
        name = name.strip()
        if not started:
            site += cumulative if top and name == "site" else 0.0
            continue
        if top:
            program += cumulative  # a nested import is counted in its parent's cumulative time
        group = name if name.startswith(("worker.", "connectors.")) else name.split(".")[0]
        per[group] = per.get(group, 0.0) + own
    return program, site, per


def _prepare(tree: Tree, folder: Path) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    _run(tree, ["-c", ENTRY, "demo", "--dir", str(folder), "--now", now])
    tree.config = folder / "config.toml"
    time.sleep(2.1)  # files this new are read again by the next pass (connectors/vdir.py)
    _run(tree, _pass_args(tree))  # warm: the calendar files are in the state now


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", help="also measure this git ref (e.g. main), alternating with this tree")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--top", type=int, default=12, help="list the packages whose imports cost most")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="callsheet-startup-"))
    try:
        trees = []
        if args.ref:
            trees.append(Tree(f"before ({args.ref})", _extract(args.ref, work / "before")))
        trees.append(Tree("after (this tree)" if args.ref else "this tree", ROOT))
        for i, tree in enumerate(trees):
            _prepare(tree, work / f"practice-{i}")
        floor_cpu: list[float] = []
        floor_wall: list[float] = []
        for turn in range(args.repeat):
            order = trees if turn % 2 == 0 else trees[::-1]
            for tree in order:
                _, _, err = _run(tree, _pass_args(tree), importtime=True)
                program, site, per = parse_importtime(err)
                tree.imports.append(program)
                tree.site.append(site)
                for name, ms in per.items():
                    tree.per_module.setdefault(name, []).append(ms)
                cpu, wall, _ = _run(tree, _pass_args(tree))
                tree.cpu.append(cpu)
                tree.wall.append(wall)
            cpu, wall, _ = _run(trees[-1], ["-c", "pass"])
            floor_cpu.append(cpu)
            floor_wall.append(wall)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"warm `run --once` on the demo folder; medians of {args.repeat} fresh processes each, load {os.getloadavg()[0]:.1f}"
    )
    rows = [
        ("importtime, program imports (cumulative)", [_median(t.imports) for t in trees]),
        ("importtime, site (interpreter start-up)", [_median(t.site) for t in trees]),
        ("CPU time of the pass (user + sys)", [_median(t.cpu) for t in trees]),
        ("wall time of the pass", [_median(t.wall) for t in trees]),
    ]
    head = f"{'figure (ms)':<44}" + "".join(f"{t.name:>22}" for t in trees)
    print(head + (f"{'ratio':>8}" if len(trees) == 2 else ""))
    for label, values in rows:
        line = f"{label:<44}" + "".join(f"{v:>22.1f}" for v in values)
        if len(values) == 2:
            line += f"{values[1] / values[0]:>8.2f}"
        print(line)
    print(f"{'python -c pass: CPU / wall':<44}{_median(floor_cpu):>10.1f} / {_median(floor_wall):.1f}")
    for tree in trees:
        runs = len(tree.imports)  # a package a run did not import counts 0 for that run
        heavy = sorted(
            ((statistics.median(v + [0.0] * (runs - len(v))), k) for k, v in tree.per_module.items()),
            reverse=True,
        )
        listed = ", ".join(f"{name} {ms:.1f}" for ms, name in heavy[: args.top])
        print(f"heaviest imports (own time, by package), {tree.name}: {listed}")


if __name__ == "__main__":
    main()
