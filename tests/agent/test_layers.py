"""The agent is embedded in data nodes: it needs the client (and the protocol the client speaks)
and nothing of the coordinator. The
example node adds the fencing helper and its own HTTP stack, never the coordinator's internals."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.unit.test_layers import ROOT, imports_of

ALLOWED = {
    "agent": {"agent", "client", "protocol"},
    "examples": {"examples", "agent", "client", "fencing", "fastapi", "uvicorn"},
}


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_room_imports_only_what_it_may(room: str) -> None:
    paths = sorted((ROOT / room).rglob("*.py"))
    assert paths
    bad = {str(p.relative_to(ROOT)): sorted(extra) for p in paths
           if (extra := imports_of(p) - ALLOWED[room] - {"__init__", "__version__"})}
    assert not bad, f"{room} imports beyond its layer: {bad}"


def test_importing_the_agent_loads_no_coordinator_code() -> None:
    code = ("import sys, hacoord.agent; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'pysyncobj', 'fastapi', "
            "'uvicorn'} or m.startswith(('hacoord.server', 'hacoord.replication', 'hacoord.core', "
            "'hacoord.placement'))); print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the agent pulled in: {out.stdout.strip()}"
