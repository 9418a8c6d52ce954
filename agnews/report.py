"""The sweep report: `python -m agnews.report [SWEEP_DIR ...] [--out DIR] [--root multirun]`.

    python -m agnews.report                                   # the newest sweep under ./multirun
    python -m agnews.report multirun/2026-12-01/11-30-00 multirun/2026-12-02/09-00-00 --out report/

Prints the accuracy table and writes report.md (the table and the findings in words), report.csv and two
PNG plots. No torch: it must start fast and run where torch is not installed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from agnews.findings import format_table, write_markdown
from agnews.plots import plot_accuracy_vs_dim, plot_val_acc_per_epoch
from agnews.storage import AgnewsError, atomic_write_text
from agnews.summary import find_latest_sweep, load_runs, summarize, summary_keys

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agnews.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dirs", nargs="*", type=Path, help="sweep folders, merged (default: newest under --root)")
    parser.add_argument("--out", type=Path, help="output folder (default: <newest given sweep>/report)")
    parser.add_argument("--root", type=Path, default=Path("multirun"), help="where to look for the newest sweep")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sweeps = args.sweep_dirs or [find_latest_sweep(args.root)]
        runs = load_runs(sweeps)
        summary = summarize(runs)
        out = args.out or max(sweeps, key=lambda s: (s.resolve().parent.name, s.resolve().name)) / "report"
        atomic_write_text(out / "report.csv", summary.to_csv(index=False))
        keys = summary_keys(summary)
        plots = [
            plot_accuracy_vs_dim(summary, out / "accuracy_vs_dim.png"),
            plot_val_acc_per_epoch(runs, keys, out / "val_acc_per_epoch.png"),
        ]
        write_markdown(summary, runs, out / "report.md", [plot for plot in plots if plot is not None])
    except AgnewsError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(format_table(summary).to_string(index=False))
    log.info("Wrote %s (report.md, report.csv and plots) from %d runs", out, len(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
