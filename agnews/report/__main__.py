"""The sweep report: `python -m agnews.report [SWEEP_DIR ...] [--out DIR] [--root multirun]`.

    python -m agnews.report                                   # the newest sweep under ./multirun
    python -m agnews.report multirun/2026-12-01/11-30-00 multirun/2026-12-02/09-00-00 --out report/
    python -m agnews.report --summary multirun/2026-12-01/11-30-00   # (re)write its summary.csv

Prints the accuracy table and writes report.md (the table and the findings in words), report.csv and two
PNG plots. `--summary` rebuilds a sweep's summary.csv from its job folders at any time: after the
launching command was killed, or while jobs still run (they show as running). No torch: it must start
fast and run where torch is not installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from agnews.report.findings import format_table, write_markdown
from agnews.report.plots import plot_accuracy_vs_dim, plot_val_acc_per_epoch
from agnews.report.search import is_search, write_search_report
from agnews.report.stats import grouping_keys, load_runs, summarize
from agnews.report.summary_csv import report_incomplete, write_summary
from agnews.report.sweep import find_latest_sweep, sweep_sort_key
from agnews.storage import AgnewsError, atomic_write_text

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agnews.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dirs", nargs="*", type=Path, help="sweep folders, merged (default: newest under --root)")
    parser.add_argument("--out", type=Path, help="output folder (default: <newest given sweep>/report)")
    parser.add_argument("--root", type=Path, default=Path("multirun"), help="where to look for the newest sweep")
    parser.add_argument("--summary", action="store_true", help="only (re)write each sweep's summary.csv")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sweeps = args.sweep_dirs or [find_latest_sweep(args.root)]
        if args.summary:
            incomplete = sum(report_incomplete(write_summary(sweep)) for sweep in sweeps)
            return 1 if incomplete else 0
        runs = load_runs(sweeps)
        out = args.out or max(sweeps, key=sweep_sort_key) / "report"
        if is_search(runs):  # trials an optimising sweeper proposed: ranked, not grouped
            table, written = write_search_report(runs, out)
            print(table.to_string(index=False))
            log.info("Wrote %s (%s) from %d trials", out, ", ".join(written), len(runs))
            return 0
        summary = summarize(runs)
        atomic_write_text(out / "report.csv", summary.to_csv(index=False))
        plots = [
            plot_accuracy_vs_dim(summary, out / "accuracy_vs_dim.png"),
            plot_val_acc_per_epoch(runs, grouping_keys(runs), out / "val_acc_per_epoch.png"),
        ]
        plots = [plot for plot in plots if plot is not None]
        write_markdown(summary, runs, out / "report.md", plots)
    except AgnewsError as error:
        hint = (
            " (pass --out DIR to write the report elsewhere)"
            if "cannot write" in str(error) and not args.summary
            else ""
        )
        print(f"{parser.prog}: error: {error}{hint}", file=sys.stderr)
        return 2
    print(format_table(summary).to_string(index=False))
    written = ["report.md", "report.csv", *(plot.name for plot in plots)]
    log.info("Wrote %s (%s) from %d runs", out, ", ".join(written), len(runs))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except BrokenPipeError:  # `... | head`: the reader left; nothing to say, as for any command-line tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
