"""The previous release, for the rolling-upgrade scenario: its ``hacoord`` package taken from the
repository's history, and how to start a member on it.

hacoord has no release tags yet: the previous release is the commit of the last change that
landed (:data:`PREVIOUS_RELEASE`). Move it forward when an upgrade should be checked from a newer
one. A member runs it with ``PYTHONPATH`` naming the extracted package (ahead of the editable
install, which Python consults after its path) and ``PYTHONSAFEPATH`` (so that the working
directory, this checkout, does not come first).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: The commit members start on before they are upgraded (the stop that landed on 2026-12-05).
PREVIOUS_RELEASE = "ece4ed2835b1adc59678e331b1648cdeaf0e4b16"
REPO = Path(__file__).resolve().parents[2]


class ReleaseUnavailable(Exception):
    """The previous release cannot be had here (no git, or a clone without that commit)."""


def previous_release(root: Path) -> tuple[str, ...]:
    """Extract the previous release's package under ``root``; the command prefix that starts a
    member on it (for :meth:`hacoord.testing.LocalCluster.start`). Raises
    :class:`ReleaseUnavailable`."""
    target = root / f"release-{PREVIOUS_RELEASE[:12]}"
    target.mkdir(parents=True, exist_ok=True)
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", PREVIOUS_RELEASE, "hacoord"],
                                 capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReleaseUnavailable(f"git archive: {exc}") from None
    if archive.returncode != 0:
        raise ReleaseUnavailable(f"commit {PREVIOUS_RELEASE[:12]} is not in this clone: "
                                 f"{archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True, timeout=60)
    prefix = ("env", "PYTHONSAFEPATH=1", f"PYTHONPATH={target}")
    where = subprocess.run([*prefix, sys.executable, "-c", "import hacoord; print(hacoord.__file__)"],
                           capture_output=True, text=True, check=True, timeout=60, cwd=REPO)
    assert where.stdout.strip() == str(target / "hacoord" / "__init__.py"), where.stdout
    return prefix
