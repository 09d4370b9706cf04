"""Storage faults for the chaos suite: a full disk, and damaged files found at a restart.

* ``disk_full``: the victim's data directory is a small tmpfs (mounted by :class:`SmallDisk`
  before the cluster starts; root only); it fills up while the victim runs and is freed at the
  heal. The victim must fail stop (one CRITICAL line, ``/readyz`` answering 503 while the disk
  is full) and, once space is back, reopen its data from disk and catch up; then it is stopped
  with SIGINT (exit 0) and started again, and must come back with all it had.
* ``flip_journal_byte``, ``delete_snapshot``: the victim is killed, a byte in the middle of its
  journal is flipped (or its snapshot deleted while its journal is compacted), and it is started
  again. It must refuse with its one ``refusing to start`` line and exit 1; the operator's way
  out, ``hacoord member rejoin``, is then run and the member started again.
* ``truncate_journal_tail``: the victim is killed and its journal's last record torn; it either
  starts (a torn last write is cut) or refuses with its line (when that record was committed).

Whatever happens, a member never serves an older state than it served before: the first read
it answers after a restart is at least at the revision it reported before the fault.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hacoord.replication.driver import JOURNAL_FILE, SNAPSHOT_FILE
from hacoord.replication.journal import MAGIC
from hacoord.testing.cluster import LocalCluster, wait_for
from tests.chaos.history import History

STORAGE_FAULTS = ("disk_full", "flip_journal_byte", "truncate_journal_tail", "delete_snapshot")
DAMAGE_FAULTS = ("flip_journal_byte", "truncate_journal_tail", "delete_snapshot")
REFUSAL = "refusing to start: "


class SmallDisk:
    """A tmpfs of ``size`` mounted on ``path`` (needs root: CI runs the chaos suite as root)."""

    def __init__(self, path: Path, size: str = "32m") -> None:
        self.path = path
        self.size = size
        self.filler = path / "filler"
        self.mounted = False

    @staticmethod
    def available() -> bool:
        return sys.platform.startswith("linux") and os.geteuid() == 0

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs",
                        str(self.path)], check=True, capture_output=True, timeout=30)
        self.mounted = True

    def fill(self) -> int:
        """Write until the disk is full; return the bytes written."""
        written = 0
        block = b"\0" * (1 << 16)
        with open(self.filler, "wb", buffering=0) as f:
            for _ in range(1 << 16):  # bounded: 4 GiB at most
                try:
                    n = f.write(block)
                except OSError:
                    break
                if not n:
                    break
                written += n
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True,
                           timeout=30)
            self.mounted = False


def record_offsets(journal: Path) -> list[int]:
    data = journal.read_bytes()
    offsets, offset = [], len(MAGIC)
    while offset + 8 <= len(data):
        offsets.append(offset)
        offset += 8 + int.from_bytes(data[offset:offset + 4], "little")
    return offsets


class StorageNemesis:
    """Injects and heals one storage fault on one member; ``problems`` says what went wrong."""

    def __init__(self, cluster: LocalCluster, rng: random.Random, history: History,
                 disk: SmallDisk | None = None) -> None:
        self.cluster = cluster
        self.rng = rng
        self.history = history
        self.disk = disk
        self.victim: str | None = None
        self.revision_before = 0
        self.refused = False
        self.started_again = False
        self.first_read_revision: int | None = None
        #: (what happened, revision the victim reported before it, its first read after it)
        self.reads_after: list[tuple[str, int, int | None]] = []
        self.not_ready_while_full = False
        self.clean_exit: int | None = None
        self.notes: list[str] = []

    # --- injecting ---------------------------------------------------------------------------

    def inject(self, fault: str, victim: str) -> None:
        self.victim = victim
        member = self.cluster.members[victim]
        self.revision_before = self.cluster.status(victim)["revision"]
        if fault == "disk_full":
            assert self.disk is not None
            written = self.disk.fill()
            self.notes.append(f"filled {victim}'s disk ({written} bytes)")
        else:
            if fault == "delete_snapshot":
                wait_for(f"a snapshot on {victim}", lambda: (member.data_dir / SNAPSHOT_FILE).exists(),
                         timeout=30)
            self.cluster.kill(victim)
            self._damage(fault, member.data_dir)
            self.cluster.start(victim)
            self._watch_restart(victim)
        self.history.note(f"inject {fault} on {victim}: {'; '.join(self.notes)}")

    def _damage(self, fault: str, data_dir: Path) -> None:
        journal = data_dir / JOURNAL_FILE
        if fault == "delete_snapshot":
            (data_dir / SNAPSHOT_FILE).unlink()
            self.notes.append("deleted its snapshot")
            return
        offsets = record_offsets(journal)
        assert len(offsets) >= 3, f"too short a journal to damage: {len(offsets)} records"
        data = bytearray(journal.read_bytes())
        if fault == "flip_journal_byte":
            at = offsets[len(offsets) // 2] + 20
            data[at] ^= 0x10
            self.notes.append(f"flipped the byte at offset {at} of {len(data)}")
        else:  # truncate_journal_tail: tear the last record
            last = offsets[-1]
            cut = self.rng.randrange(last + 1, len(data))
            del data[cut:]
            self.notes.append(f"cut the journal at {cut} of its last record [{last}, ...)")
        journal.write_bytes(bytes(data))

    def _watch_restart(self, victim: str) -> None:
        """Until the victim exits or answers a read: remember what it did."""
        member = self.cluster.members[victim]
        deadline = time.monotonic() + 60
        with self.cluster.http(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if not member.alive():
                    self.refused = member.proc is not None and member.proc.returncode == 1
                    return
                try:
                    answer = http.get(member.url + "/v1/nodes")
                except httpx.HTTPError:
                    answer = None
                if answer is not None and answer.status_code == 200:
                    self.started_again = True
                    self.first_read_revision = answer.json()["revision"]
                    return
                time.sleep(0.02)

    def _saw_not_ready(self, victim: str, timeout: float = 15.0) -> bool:
        """Whether the victim answers ``/readyz`` 503 (storage failed) within ``timeout``."""
        member = self.cluster.members[victim]
        deadline = time.monotonic() + timeout
        with self.cluster.http(timeout=1.0) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(member.url + "/readyz").status_code == 503:
                        return True
                time.sleep(0.05)
        return False

    def _after_full_disk(self, victim: str) -> None:
        """Space is back: the victim reopens what it had; then a clean stop and start."""
        member = self.cluster.members[victim]
        self._watch_restart(victim)  # it never exited: the first read it answers again
        self.reads_after.append(("reopen", self.revision_before, self.first_read_revision))
        before = self.cluster.status(victim)["revision"]
        self.cluster.kill(victim, signal.SIGINT)
        self.clean_exit = member.proc.returncode if member.proc is not None else None
        self.cluster.start(victim)
        self.first_read_revision = None
        self._watch_restart(victim)
        self.reads_after.append(("SIGINT restart", before, self.first_read_revision))
        self.notes.append(f"SIGINT: exit {self.clean_exit}, revision {before} -> first read "
                          f"{self.first_read_revision}")

    # --- healing -----------------------------------------------------------------------------

    def heal(self, fault: str) -> None:
        victim = self.victim
        assert victim is not None
        if fault == "disk_full":
            assert self.disk is not None
            self.not_ready_while_full = self._saw_not_ready(victim)
            self.disk.free()
            self._after_full_disk(victim)
        elif self.refused:
            argv = [sys.executable, "-m", "hacoord", "member", "rejoin", "--data-dir",
                    str(self.cluster.members[victim].data_dir)]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            self.notes.append(f"rejoin: exit {done.returncode}: {done.stdout.strip()}"
                              f"{done.stderr.strip()}")
            self.cluster.start(victim)
            self._watch_restart(victim)
        self.history.note(f"heal {fault} on {victim}: {'; '.join(self.notes)}")

    def problems(self, fault: str) -> list[str]:
        victim = self.victim
        if victim is None:
            return [f"{fault}: nothing was injected"]
        log = self.cluster.members[victim].log_path.read_text(errors="replace")
        problems = []
        if fault == "disk_full":
            if "storage failure" not in log:
                problems.append(f"disk_full: {victim} never reported the storage failure")
            if "reopened this member's data from disk" not in log:
                problems.append(f"disk_full: {victim} never reopened its data after the heal")
            if not self.not_ready_while_full:
                problems.append(f"disk_full: {victim} never answered /readyz 503 on a full disk")
            if self.clean_exit != 0:
                problems.append(f"disk_full: {victim} exited {self.clean_exit} on SIGINT")
            for what, before, first in self.reads_after:
                if first is None:
                    problems.append(f"disk_full: {victim} answered no read after its {what}")
                elif first < before:
                    problems.append(f"disk_full: after its {what} {victim} served revision "
                                    f"{first}, older than the {before} it had before")
        else:
            refusals = [line for line in log.splitlines() if REFUSAL in line]
            if fault in ("flip_journal_byte", "delete_snapshot") and not refusals:
                problems.append(f"{fault}: {victim} started from damaged files")
            if self.refused and not refusals:
                problems.append(f"{fault}: {victim} exited 1 without its refusal line")
            if not self.started_again:
                problems.append(f"{fault}: {victim} never served again ({'; '.join(self.notes)})")
        if self.first_read_revision is not None and self.first_read_revision < self.revision_before:
            problems.append(f"{fault}: {victim} served revision {self.first_read_revision} after "
                            f"the fault, older than the {self.revision_before} it had before")
        return problems
