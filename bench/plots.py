"""PNG plots of benchmark results, written beside their JSON (matplotlib, headless).

``python -m bench.plots RESULT.json`` plots an existing result; ``bench.run`` and
``bench.scale`` call :func:`plot_file` when they finish. matplotlib comes with the ``bench``
extra (``pip install -e '.[bench]'``, which ``make bench`` does); without it the figures are
still written as JSON and the plots are skipped with one line saying so.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def plot_run(result: dict[str, Any], stem: Path, plt: Any) -> list[Path]:
    """``bench.run``: writes/s and p99 per concurrency (with the same run's ``/livez``
    baseline), and the failover samples of each fault."""
    rows = result["throughput"]
    clients = [row["clients"] for row in rows]
    figure, (rate, p99) = plt.subplots(1, 2, figsize=(10, 4))
    rate.plot(clients, [row["writes"]["ops_per_s"] for row in rows], "o-", label="writes/s")
    rate.plot(clients, [row["baseline_livez"]["ops_per_s"] for row in rows], "s--",
              label="GET /livez/s (baseline, same run)")
    rate.set(xscale="log", xlabel="concurrent clients", ylabel="requests/s",
             title="Throughput")
    rate.set_xticks(clients, [str(c) for c in clients])
    rate.legend()
    p99.plot(clients, [row["writes"]["p99_ms"] for row in rows], "o-", label="write p99")
    p99.plot(clients, [row["writes"]["p50_ms"] for row in rows], "o:", label="write p50")
    p99.set(xscale="log", xlabel="concurrent clients", ylabel="ms", title="Write latency")
    p99.set_xticks(clients, [str(c) for c in clients])
    p99.legend()
    figure.tight_layout()
    throughput = stem.with_name(stem.name + "-throughput.png")
    figure.savefig(throughput, dpi=100)
    plt.close(figure)

    faults = [(key, label) for key, label in (("failover", "leader SIGKILL"),
                                              ("failover_pause", "leader SIGSTOP"))
              if key in result]
    figure, axis = plt.subplots(figsize=(6, 4))
    for position, (key, label) in enumerate(faults):
        samples = result[key]["samples_s"]
        axis.plot([position] * len(samples), samples, "o", alpha=0.6, label=label)
        axis.hlines(result[key]["median_s"], position - 0.2, position + 0.2, colors="black")
    axis.set_xticks(range(len(faults)), [label for _, label in faults])
    axis.set(ylabel="seconds to the first acknowledged write", xlim=(-0.6, len(faults) - 0.4),
             title="Failover (each sample; line: median)")
    figure.tight_layout()
    failover = stem.with_name(stem.name + "-failover.png")
    figure.savefig(failover, dpi=100)
    plt.close(figure)
    return [throughput, failover]


def plot_scale(result: dict[str, Any], stem: Path, plt: Any) -> list[Path]:
    """``bench.scale``: the probe write's latency over the run, the phases shaded, and each
    member's event-loop lag samples over 20 ms over the same time."""
    probe = result.get("probe_samples") or []
    phases = result.get("phase_times") or []
    figure, (latency, lag) = plt.subplots(2, 1, figsize=(11, 7))
    for index, (name, start, end) in enumerate(phases):
        for axis in (latency, lag):
            axis.axvspan(start, end, alpha=0.08 if index % 2 else 0.16, color="tab:blue")
        latency.text((start + end) / 2, 0.02, name, rotation=90, fontsize=7, ha="center",
                     va="bottom", transform=latency.get_xaxis_transform())
    latency.plot([t for t, _ in probe], [1000 * s for _, s in probe], ".", markersize=2)
    latency.set(xlabel="seconds into the run", ylabel="probe write ms (log)", yscale="log",
                title="A small write every 50 ms, from start to acknowledgement")
    for member, samples in sorted((result.get("lag_samples") or {}).items()):
        lag.plot([t for t, *_ in samples], [1000 * s for _, s, *_ in samples], ".", markersize=3,
                 label=f"{member} ({len(samples)})")
    lag.axhline(100, color="grey", linewidth=0.8, linestyle="--")
    lag.set(xlabel="seconds into the run", ylabel="loop lag ms (log)", yscale="log",
            xlim=latency.get_xlim(),
            title="Event-loop lag over the run: every sample over 20 ms, per member "
                  "(dashed: 100 ms, logged as a stall)")
    if result.get("lag_samples"):
        lag.legend(fontsize=7)
    figure.tight_layout()
    path = stem.with_name(stem.name + "-timeline.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return [path]


def plot_file(path: Path) -> list[Path]:
    """Plot the result in ``path`` (a ``bench.run`` or ``bench.scale`` JSON) beside it; return
    the PNGs written (none, with a line on stderr, if matplotlib is missing)."""
    plt = _pyplot()
    if plt is None:
        print("plots skipped: matplotlib is not installed (pip install -e '.[bench]')",
              file=sys.stderr)
        return []
    result = json.loads(path.read_text())
    stem = path.with_suffix("")
    if "throughput" in result:
        return plot_run(result, stem, plt)
    if "phases" in result:
        return plot_scale(result, stem, plt)
    raise SystemExit(f"{path}: not a bench.run or bench.scale result")


def main() -> None:
    for name in sys.argv[1:]:
        for written in plot_file(Path(name)):
            print(f"plotted {written}")


if __name__ == "__main__":
    main()
