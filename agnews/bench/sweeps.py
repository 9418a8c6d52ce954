"""How a sweep uses one machine: the same sweep under two launchers, in turn, each as a whole command, and
single runs with each thread count, on a quiet machine and with cores kept busy by other processes.

    python -m agnews.bench.sweeps data.dir=/path/to/ag_news embedding=learned,glove50_frozen,glove50 seed=0,1,2
    python -m agnews.bench.sweeps data.dir=... embedding=learned seed=0,1 trainer.epochs=1 --busy 0 1 --rounds 2

Prints, per number of busy cores: each launcher's wall time (median of the rounds) and its throughput against
the first launcher's, the threads its jobs chose, whether the launchers' test accuracies are identical; and
single runs (the sweep's first job) with trainer.num_threads unset and set to each count, in samples/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from agnews.tables import text_table

SPIN = "while True: pass"


@contextlib.contextmanager
def busy(cores: int) -> Iterator[None]:
    """`cores` other processes, each keeping a core busy, for the block."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(cores)]
    try:
        time.sleep(1.0 if spinners else 0.0)  # let them get going
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def run_sweep(overrides: Sequence[str], launcher: str, folder: Path) -> tuple[float, list[dict]]:
    """The sweep as one command under `launcher`: (wall seconds, what each job recorded)."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "agnews.run", "--multirun", *overrides, f"hydra/launcher={launcher}"]
    done = subprocess.run(
        [*command, f"hydra.sweep.dir={folder}", "trainer.progress_bar=false"], capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{launcher}: exit {done.returncode}\n{done.stderr[-2000:]}")
    files = sorted(folder.glob("*/results.json"), key=lambda path: int(path.parent.name))
    return seconds, [json.loads(path.read_text()) for path in files]


def run_single(overrides: Sequence[str], threads: int | None, folder: Path) -> tuple[float, dict | None]:
    """The sweep's first job as a single run: (training samples/s, median over its epochs; its threads)."""
    single = [item.split(",")[0] if "=" in item else item for item in overrides]  # each swept key's first value
    chosen = [] if threads is None else [f"trainer.num_threads={threads}"]
    command = [sys.executable, "-m", "agnews.run", *single, *chosen, f"hydra.run.dir={folder}"]
    done = subprocess.run([*command, "trainer.progress_bar=false"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"single run: exit {done.returncode}\n{done.stderr[-2000:]}")
    record = json.loads((folder / "results.json").read_text())
    return statistics.median(epoch["samples_per_s"] for epoch in record["history"]), record.get("threads")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agnews.bench.sweeps", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "overrides", nargs="+", help="the sweep: Hydra overrides, e.g. embedding=learned,glove50 seed=0,1"
    )
    parser.add_argument("--launchers", nargs="+", default=["basic", "local"], help="hydra/launcher options, in turn")
    parser.add_argument("--busy", nargs="+", type=int, default=[0, 1], help="other processes' busy cores to measure")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each launcher (in turn) per busy level")
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2], help="thread counts for the single runs")
    args = parser.parse_args(argv)
    rows = [["busy cores", "launcher", "wall (median)", "throughput vs first", "threads per job", "test acc"]]
    singles = [["busy cores", "trainer.num_threads", "samples/s (median epoch)", "vs best", "chose"]]
    with tempfile.TemporaryDirectory(prefix="agnews-bench-sweeps-") as scratch:
        for level in args.busy:
            with busy(level):
                walls: dict[str, list[float]] = {launcher: [] for launcher in args.launchers}
                jobs: dict[str, list[dict]] = {}
                for round_ in range(args.rounds):
                    for launcher in args.launchers:
                        folder = Path(scratch) / f"busy{level}-{launcher}-{round_}"
                        seconds, jobs[launcher] = run_sweep(args.overrides, launcher, folder)
                        walls[launcher].append(seconds)
                        print(f"busy {level}, {launcher}, round {round_ + 1}: {seconds:.1f} s", file=sys.stderr)
                first = statistics.median(walls[args.launchers[0]])
                reference = [job["metrics"].get("test_acc") for job in jobs[args.launchers[0]]]
                for launcher in args.launchers:
                    wall = statistics.median(walls[launcher])
                    chosen = sorted({(job.get("threads") or {}).get("count") for job in jobs[launcher]} - {None})
                    same = [job["metrics"].get("test_acc") for job in jobs[launcher]] == reference
                    rows.append(
                        [
                            str(level),
                            launcher,
                            f"{wall:.1f} s",
                            f"{first / wall:.2f}x",
                            "/".join(map(str, chosen)),
                            "identical" if same else "differ",
                        ]
                    )
                speeds: dict[str, float] = {}
                for threads in [None, *args.threads]:
                    label = "unset (agnews chooses)" if threads is None else str(threads)
                    speed, chose = run_single(args.overrides, threads, Path(scratch) / f"single-{level}-{label[:5]}")
                    speeds[label] = speed
                    singles.append([str(level), label, f"{speed:,.0f}", "", (chose or {}).get("why", "")])
                best = max(speeds.values())
                for row, speed in zip(singles[-len(speeds) :], speeds.values(), strict=True):
                    row[3] = f"{100 * speed / best:.0f} %"
    print(f"{os.cpu_count()} cores; sweep: {' '.join(args.overrides)}")
    print(text_table(rows))
    print()
    print(text_table(singles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
