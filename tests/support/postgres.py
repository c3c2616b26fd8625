"""Throwaway PostgreSQL server for tests.

Runs Debian's ``postgresql`` server binaries (installed by ``.ci/run`` via
``apt-get install postgresql``) against a fresh cluster in a temp directory.
Missing binaries are an error, never a silent skip: tests that need a real
database must not quietly stop running.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

DEFAULT_LIB_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "watchword"
HOST = "127.0.0.1"
# Unix socket paths are limited to ~107 bytes; leave room for "/.s.PGSQL.NNNNN".
_MAX_SOCKET_DIR_LEN = 90


@dataclass(frozen=True)
class PgBinaries:
    initdb: Path
    pg_ctl: Path
    postgres: Path


def find_binaries(lib_root: Path = DEFAULT_LIB_ROOT, path: str | None = None) -> PgBinaries:
    """Locate initdb/pg_ctl/postgres: newest /usr/lib/postgresql/*/bin first, then PATH."""

    def version_key(d: Path) -> tuple[int, ...]:
        try:
            return tuple(int(p) for p in d.name.split("."))
        except ValueError:
            return (-1,)

    names = ("initdb", "pg_ctl", "postgres")
    if lib_root.is_dir():
        for version_dir in sorted(lib_root.iterdir(), key=version_key, reverse=True):
            bin_dir = version_dir / "bin"
            # All three must come from the same version, or initdb and postgres disagree.
            if all(os.access(bin_dir / n, os.X_OK) for n in names):
                return PgBinaries(*(bin_dir / n for n in names))
    found = [shutil.which(n, path=path) for n in names]
    if all(found):
        return PgBinaries(*(Path(f) for f in found if f))
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) are missing: looked in "
        f"{lib_root}/*/bin and on PATH. Install them with `apt-get install postgresql` "
        "(which .ci/run does)."
    )


def _free_port() -> int:
    # Ask the kernel for a free port; tiny race with other processes is acceptable in tests.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _unprivileged_user() -> str:
    """PostgreSQL refuses to run as root: pick (or create) a user to run it as."""
    for name in ("postgres", "watchword-pg"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "watchword-pg",
        ],
        check=True,
        capture_output=True,
    )
    return "watchword-pg"


def _as_user(user: str | None, cmd: list[str]) -> list[str]:
    if user is None:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *cmd]
    if shutil.which("setpriv"):
        pw = pwd.getpwnam(user)
        return [
            "setpriv",
            f"--reuid={pw.pw_uid}",
            f"--regid={pw.pw_gid}",
            "--init-groups",
            "--",
            *cmd,
        ]
    return ["su", "-s", "/bin/sh", user, "-c", shlex.join(cmd)]


def _alive(pid: int) -> bool:
    # The postmaster is daemonised by pg_ctl; if PID 1 doesn't reap, it lingers as a zombie.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class PostgresServer:
    """A fresh PostgreSQL cluster on 127.0.0.1:<free port>, stopped and removed on exit."""

    def __init__(
        self,
        base_dir: Path,
        *,
        startup_timeout: float = 30.0,
        stop_timeout: float = 30.0,
        binaries: PgBinaries | None = None,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.binaries = binaries or find_binaries()
        self.user = SUPERUSER
        self.port = _free_port()  # kept across restarts so URLs stay valid
        self._run_as: str | None = _unprivileged_user() if os.geteuid() == 0 else None
        self._dir: Path | None = None
        self._owns_dir = False

    # -- paths -------------------------------------------------------------

    @property
    def cluster_dir(self) -> Path:
        if self._dir is None:
            raise RuntimeError("PostgresServer has not been initialised (call start())")
        return self._dir

    @property
    def data_dir(self) -> Path:
        return self.cluster_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.cluster_dir / "postgres.log"

    @property
    def pid(self) -> int | None:
        """PID of the running postmaster, or None when stopped."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError, RuntimeError):
            return None
        return pid if _alive(pid) else None

    # -- connection info ---------------------------------------------------

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}@{HOST}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return make_conninfo(host=HOST, port=self.port, user=self.user, dbname=database)

    def create_database(self, name: str) -> str:
        # autocommit: CREATE DATABASE cannot run inside a transaction block.
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    # -- lifecycle ---------------------------------------------------------

    def _run(self, cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        # cwd inside the cluster: the unprivileged user may not be able to read our cwd.
        return subprocess.run(
            _as_user(self._run_as, cmd),
            check=False,  # callers inspect returncode to attach the server log
            cwd=self.cluster_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no server log>"

    def _init_cluster(self) -> None:
        prefix = "watchword-pg-"
        self.base_dir.mkdir(parents=True, exist_ok=True)
        candidate = Path(tempfile.mkdtemp(prefix=prefix, dir=self.base_dir))
        if self._run_as is not None or len(str(candidate)) > _MAX_SOCKET_DIR_LEN:
            # pytest's root tmp dirs are mode 700 (the postgres user can't traverse them) and
            # deep paths overflow the unix socket limit: use a fresh dir in /tmp instead.
            candidate.rmdir()
            candidate = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
            self._owns_dir = True
        self._dir = candidate
        if self._run_as is not None:
            pw = pwd.getpwnam(self._run_as)
            os.chown(candidate, pw.pw_uid, pw.pw_gid)
            candidate.chmod(0o755)
        cmd = [
            str(self.binaries.initdb),
            "-D", str(self.data_dir),
            "--auth=trust",
            "-U", self.user,
            "--encoding=UTF8",
            "--locale=C",  # don't depend on which locales the host has generated
            "--no-sync",  # throwaway cluster: durability is irrelevant, speed isn't
        ]  # fmt: skip
        result = self._run(cmd, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# watchword test settings\n"
                f"listen_addresses = '{HOST}'\n"
                f"port = {self.port}\n"
                # Own socket dir: /var/run/postgresql may not exist or be writable.
                f"unix_socket_directories = '{self.cluster_dir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )

    def start(self) -> None:
        """Start the server (initialising the cluster on first use) and wait until it accepts connections."""
        if self._dir is None:
            self._init_cluster()
        if self.pid is not None:
            return
        self._remove_stale_locks()  # only reached when no live postmaster owns them
        deadline = time.monotonic() + self.startup_timeout
        cmd = [
            str(self.binaries.pg_ctl), "start",
            "-D", str(self.data_dir),
            "-l", str(self.log_file),
            "-w", "-t", str(max(1, int(self.startup_timeout))),
        ]  # fmt: skip
        try:
            result = self._run(cmd, timeout=self.startup_timeout + 10)
        except subprocess.TimeoutExpired:
            result = None
        if result is None or result.returncode != 0:
            out = "" if result is None else f"{result.stdout}{result.stderr}"
            raise RuntimeError(
                f"PostgreSQL failed to start on port {self.port} (timeout {self.startup_timeout:.0f}s).\n"
                f"{out}\n--- server log tail ({self.log_file}) ---\n{self._log_tail()}"
            )
        # pg_ctl -w trusts postmaster.pid; also prove a real TCP connection works.
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last_error = exc
                time.sleep(0.1)
        raise RuntimeError(
            f"PostgreSQL on port {self.port} not accepting connections after "
            f"{self.startup_timeout:.0f}s: {last_error}\n"
            f"--- server log tail ({self.log_file}) ---\n{self._log_tail()}"
        )

    def stop(self) -> None:
        """Fast shutdown (rolls back open transactions); SIGKILL the process group if that hangs."""
        pid = self.pid
        if pid is None:
            return
        cmd = [str(self.binaries.pg_ctl), "stop", "-D", str(self.data_dir), "-m", "fast", "-w",
               "-t", str(max(1, int(self.stop_timeout)))]  # fmt: skip
        try:
            ok = self._run(cmd, timeout=self.stop_timeout + 10).returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        if ok:
            # postmaster.pid goes away just before the process exits; give it a moment.
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if not _alive(pid):
                return
        # pg_ctl setsid()s the postmaster, so its group holds all backends too.
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
                break
            except OSError:
                continue
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            raise RuntimeError(f"PostgreSQL postmaster {pid} survived SIGKILL")
        self._remove_stale_locks()

    def _remove_stale_locks(self) -> None:
        # A killed/crashed postmaster leaves its lock files behind, and if nobody reaps the
        # zombie (e.g. PID 1 in a container) PostgreSQL's own kill(pid, 0) check says it's alive.
        for lock in (self.data_dir / "postmaster.pid", self.cluster_dir / f".s.PGSQL.{self.port}.lock"):
            lock.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def processes(self) -> list[int]:
        """The postmaster and every backend and helper it forked."""
        root = self.pid
        if root is None:
            return []
        found = [root]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == root:
                found.append(int(stat.parent.name))
        return found

    def freeze(self, timeout: float = 5.0) -> None:
        """Every process stops (SIGSTOP): connections stay open, nothing is answered or refused.

        The postmaster stops first, so it forks no backend after the scan; then the children are scanned
        again, for a backend forked while the first scan ran. A signal takes effect when its process next
        runs, so this returns once every process is seen stopped (or gone), not merely signalled."""
        deadline = time.monotonic() + timeout
        stopped: set[int] = set()
        while True:
            fresh = [pid for pid in self.processes() if pid not in stopped]
            for pid in fresh:
                _signal(pid, signal.SIGSTOP)
                stopped.add(pid)
            if not fresh and not self.running():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL processes still running after SIGSTOP: {self.running()}")
            time.sleep(0.005)

    def running(self) -> dict[int, str]:
        """The processes that are neither stopped nor gone, with their state letter (e.g. S, R, D)."""
        states = {pid: process_state(pid) for pid in self.processes()}
        return {pid: state for pid, state in states.items() if state not in "TtZX"}

    def thaw(self) -> None:
        for pid in self.processes():
            _signal(pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop the server and delete the cluster if we created it outside base_dir."""
        try:
            self.stop()
        finally:
            if self._dir is not None and self._owns_dir:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat: T stopped, Z exited and not reaped (its stopped parent
    cannot), X gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "X"


def _signal(pid: int, signum: int) -> None:
    """A backend may exit between the scan and the signal (a closed connection): that is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
