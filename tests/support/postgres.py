"""A real PostgreSQL server for tests, started from the machine's binaries in a temp dir.

initdb + pg_ctl on a free loopback port, trust authentication, fsync off (tests need
no durability across a power cut). PostgreSQL refuses to run as root, and tests run
as root here and in CI: the server then runs as an unprivileged user (`postgres`
when the packages created it, else `nobody`) through `setpriv`, owning its
directory. Each test gets a database of its own (`fresh_database`).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Self

import psycopg

_BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")


def postgres_bindir() -> Path | None:
    """A directory holding initdb, pg_ctl and postgres, newest version first, or None."""
    on_path = shutil.which("pg_ctl")
    candidates = sorted(
        (Path(p) for pattern in _BIN_GLOBS for p in glob.glob(pattern)),
        key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()] or [0],
        reverse=True,
    )
    if on_path:
        candidates.append(Path(on_path).parent)
    for path in candidates:
        if all((path / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return path
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class PostgresServer:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = _free_port()
        self._dir: Path | None = None
        self._user: pwd.struct_passwd | None = None

    @property
    def url(self) -> str:
        return self.url_of("postgres")

    def url_of(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self._user is not None:
            uid, gid = str(self._user.pw_uid), str(self._user.pw_gid)
            command = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *command]
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        if self._user is not None:
            env["HOME"] = str(self._dir)
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        if result.returncode != 0:
            log = self._dir / "server.log" if self._dir else None
            tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}{tail}")

    def start(self) -> Self:
        # Not under pytest's tmp_path: its parents are private to root.
        self._dir = Path(tempfile.mkdtemp(prefix="pg-test-"))
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                self._user = pwd.getpwnam("nobody")
            os.chown(self._dir, self._user.pw_uid, self._user.pw_gid)
        data = self._dir / "data"
        self._run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")  # fmt: skip
        options = (
            f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self._dir / "server.log"),
                  "-w", "-t", "60", "start")  # fmt: skip
        return self

    def stop(self) -> None:
        if self._dir is None:
            return
        try:
            self._run("pg_ctl", "-D", str(self._dir / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def fresh_database(self) -> str:
        """The URL of a new, empty database."""
        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url_of(name)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
