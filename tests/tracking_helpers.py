"""Shared pieces of the tracking tests: a store URI per test, and a throwaway PostgreSQL
server (started once per session with the Debian binaries; the tests that need it skip,
saying why, where it cannot start)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def sqlite_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'layerwise.db'}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    """Run as the ``postgres`` user when we are root (initdb refuses root)."""
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("PostgreSQL: running as root and runuser is not installed")
        return [runuser, "-u", "postgres", "--", *cmd]
    return cmd


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found and shutil.which(name) is None:
        pytest.skip(f"PostgreSQL: {name} not found (install the Debian package postgresql)")
    return found[-1] if found else str(shutil.which(name))


def _run(cmd: list[str], what: str) -> None:
    out = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, timeout=120,
                         check=False)
    if out.returncode:
        pytest.skip(f"PostgreSQL: {what} failed: {(out.stderr or out.stdout).strip()[-300:]}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh cluster in a temp folder on a free port (unix socket there too); yields its
    URL; stops and removes it afterwards."""
    pytest.importorskip("psycopg", reason="PostgreSQL: the psycopg driver is not installed")
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    root = Path(tempfile.mkdtemp(prefix="layerwise-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    try:
        _run([initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
             "initdb")
        opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run([pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "-t", "60",
              "start"], "pg_ctl start")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
                           capture_output=True, timeout=60, check=False)
        time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)
