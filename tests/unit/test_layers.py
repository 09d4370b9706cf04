"""Imports only go down: core <- placement <- replication <- server; client never pulls in the
coordinator. Checked on the source (every import statement) and at run time (what importing the
client actually loads)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hacoord

ROOT = Path(hacoord.__file__).parent

# room -> rooms (and third-party coordinator packages) it may import
ALLOWED = {
    "core": {"core", "protocol"},
    "placement": {"core", "placement"},
    "replication": {"core", "replication", "protocol", "pysyncobj"},
    "server": {"core", "placement", "replication", "server", "protocol", "fastapi", "uvicorn"},
    "protocol": {"protocol"},
    "client": {"client", "protocol"},
    # serve / cluster up run the server; member rejoin works on a stopped member's files.
    "cli": {"cli", "client", "server", "core", "replication", "protocol"},
    # The testing kit runs real members (processes) or the API over in-memory replicators, fakes
    # the coordinator for agent tests and applies plans as an oracle.
    "testing": {"testing", "server", "replication", "core", "placement", "client", "agent",
                "protocol"},
}
COORDINATOR_ONLY = {"pysyncobj", "fastapi", "uvicorn"}
#: Standard-library modules that read clocks, draw random numbers, start threads or touch the
#: process, the files, the network or the log: core and placement are pure functions of their
#: arguments (the same command on the same state gives the same answer on every member).
IMPURE = {"time", "random", "secrets", "uuid", "threading", "multiprocessing", "asyncio",
          "concurrent", "subprocess", "os", "sys", "socket", "ssl", "select", "signal", "io",
          "pathlib", "shutil", "tempfile", "logging", "datetime", "linecache", "traceback",
          "warnings", "urllib", "http"}
PURE_ROOMS = ("core", "placement")


def imports_of(path: Path) -> set[str]:
    """Top-level names imported by a module: 'core' for hacoord.core..., else the package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "hacoord" and len(parts) > 1:
                found.add(parts[1])
            elif parts[0] in COORDINATOR_ONLY:
                found.add(parts[0])
    return found


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_room_imports_only_what_it_may(room: str) -> None:
    bad = {}
    for path in sorted((ROOT / room).rglob("*.py")):
        extra = imports_of(path) - ALLOWED[room] - {"__init__", "__version__"}
        if extra:
            bad[str(path.relative_to(ROOT))] = sorted(extra)
    assert not bad, f"{room} imports beyond its layer: {bad}"


def test_only_replication_imports_pysyncobj() -> None:
    users = sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                   if "pysyncobj" in imports_of(p))
    assert users and all(u.startswith("replication/") for u in users), users


def test_importing_the_client_loads_no_coordinator_code() -> None:
    code = ("import sys, hacoord; from hacoord import Client; import hacoord.client; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'pysyncobj', 'fastapi', 'uvicorn'} or m.startswith(('hacoord.server', "
            "'hacoord.replication'))); print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the client pulled in: {out.stdout.strip()}"


def test_a_member_start_loads_neither_the_client_nor_the_certificate_code() -> None:
    """``hacoord serve`` goes through the CLI: it must not pay for the client's HTTP stack and
    models, nor for certificate code (only ``cluster up`` makes certificates)."""
    code = ("import sys, hacoord.cli.main, hacoord.server.member; "
            "print(','.join(sorted(m for m in sys.modules if m.startswith(('hacoord.client.', "
            "'cryptography.x509', 'hacoord.server.certs')) and m != 'hacoord.client.errors')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"a member's start loads: {out.stdout.strip()}"


def standard_imports_of(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports (``os`` for ``os.path``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("room", PURE_ROOMS)
def test_pure_rooms_import_no_clock_randomness_io_or_logging(room: str) -> None:
    found = {str(path.relative_to(ROOT)): sorted(standard_imports_of(path) & IMPURE)
             for path in sorted((ROOT / room).rglob("*.py"))}
    bad = {module: names for module, names in found.items() if names}
    assert not bad, f"{room} imports impure modules: {bad}"


def test_the_impurity_check_sees_an_impure_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import math\nfrom os.path import join\nimport time as clock\n")
    assert standard_imports_of(sample) & IMPURE == {"os", "time"}
