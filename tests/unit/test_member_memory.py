"""A member gives the memory of a freed multi-megabyte buffer back to the system
(``hacoord.server.member.keep_big_buffers_mapped``). Run in child processes: the allocator's
settings are for the life of a process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys
    from hacoord.server.member import keep_big_buffers_mapped

    def rss_kib():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    fixed = keep_big_buffers_mapped() if sys.argv[1] == "member" else None
    size = 12 << 20
    first = bytearray(size)  # a routing table read back from a child, say
    del first  # glibc, by default, raises its mmap threshold to this size here
    before = rss_kib()
    second = bytearray(size)  # the next one (the pages are written: they are resident)
    del second
    print(json.dumps({"fixed": fixed, "kept_mib": (rss_kib() - before) / 1024}))
""")


def run(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                          timeout=60, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_member_gives_a_freed_big_buffer_back() -> None:
    member = run("member")
    assert member["fixed"] is True
    assert member["kept_mib"] < 2


def test_by_default_the_process_keeps_it() -> None:
    """What the setting is for (glibc's default; a test of the premise)."""
    assert run("plain")["kept_mib"] > 10
