"""The member's collection policy (``hacoord.replication.gcpolicy``): after the state grew, the
collector no longer holds its objects; elsewhere nothing is frozen. Run in a child process:
freezing is for the life of a process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import gc, json, sys
    from hacoord.core import commands as c
    from hacoord.replication import gcpolicy
    from hacoord.replication.statemachine import StateMachine, encode_batch

    if sys.argv[1] == "member":
        gcpolicy.configure_for_member()
    sm = StateMachine(lambda rid, outcome: None, lambda _prepared: None)
    nodes = [c.encode(c.RegisterNode(time=1.0, node_id=f"n{i}", address=f"10.0.0.{i + 1}:9000"))
             for i in range(3)]
    sm.apply_batch(encode_batch(nodes), _doApply=True)
    frozen_before = gc.get_freeze_count()
    create = c.encode(c.CreateResource(time=2.0, name="r", partitions=2000, replication_factor=3,
                                       assignment=[["n0", "n1", "n2"]] * 2000))
    sm.apply_batch(encode_batch([create]), _doApply=True)
    tracked = sum(1 for o in gc.get_objects() if type(o).__name__ == "Partition")
    print(json.dumps({"partitions": len(sm.state.resources["r"].partitions),
                      "frozen_growth": gc.get_freeze_count() - frozen_before,
                      "partitions_young": tracked}))
""")


def run(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_member_freezes_the_state_after_it_grew() -> None:
    member = run("member")
    assert member["partitions"] == 2000
    assert member["frozen_growth"] >= 2000  # the partitions (and their lists) went permanent
    assert member["partitions_young"] == 0  # no collection will scan them


def test_elsewhere_nothing_is_frozen() -> None:
    other = run("plain")
    assert other["partitions"] == 2000
    assert other["frozen_growth"] == 0 and other["partitions_young"] == 2000
