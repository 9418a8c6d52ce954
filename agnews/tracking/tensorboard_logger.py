"""TensorBoard backend: event files in the run folder itself, so `tensorboard --logdir <sweep>` shows one
run per job, named by its folder (0, 1, ...).

Per epoch: scalars (step = epoch), flushed at once so TensorBoard shows the run live. At the start: the
config as text, and the HParams plugin's session start (the flat config as hyperparameters) with the
experiment's metric list; at the end: the final metrics and the session's end with its status, so the
HParams tab compares a sweep's jobs and can filter out failed ones. The HParams protobufs come from
tensorboard's own summary_v2 helpers, which need no TensorFlow; torch's SummaryWriter writes them.
"""

from __future__ import annotations

import time
from typing import Any

from agnews.results import RunStatus
from agnews.tracking.facts import HPARAMS_METRICS, RunFacts, epoch_metrics, with_running_best


def _session_end_pb(status: str) -> Any:
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    # HParams knows success, failure, running and unknown: a pruned trial (stopped by its search) is no failure.
    status_pb = {RunStatus.completed: api_pb2.STATUS_SUCCESS, RunStatus.pruned: api_pb2.STATUS_UNKNOWN}.get(
        RunStatus(status) if status in set(RunStatus) else None, api_pb2.STATUS_FAILURE
    )
    info = plugin_data_pb2.SessionEndInfo(status=status_pb, end_time_secs=time.time())
    content = plugin_data_pb2.HParamsPluginData(session_end_info=info, version=metadata.PLUGIN_DATA_VERSION)
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=metadata.SESSION_END_INFO_TAG,
        metadata=metadata.create_summary_metadata(content),
        tensor=metadata.NULL_TENSOR,
    )
    return summary


def _markdown_table(items: dict[str, Any]) -> str:
    rows = "\n".join(f"| {key} | {str(value).replace('|', '/')} |" for key, value in items.items())
    return f"| key | value |\n|---|---|\n{rows}"


class TensorBoardTracker:
    def __init__(self) -> None:
        self.writer: Any = None
        self.step = 0

    def start(self, run: RunFacts) -> None:
        from tensorboard.plugins.hparams import summary_v2
        from torch.utils.tensorboard import SummaryWriter

        self.step = len(run.history)
        # A resumed run: purge_step=1 makes TensorBoard drop every epoch the earlier attempts logged, and the
        # epochs results.json holds are logged again below, so each epoch appears once, even one whose
        # logging the kill cut short.
        self.writer = SummaryWriter(log_dir=str(run.run_dir), purge_step=1 if run.history else None)
        params = run.params()
        hparams = [summary_v2.HParam(name) for name in params]
        metrics = [summary_v2.Metric(tag) for tag in HPARAMS_METRICS]
        # SummaryWriter's public add_hparams writes a session's start and end at once, into a new run folder; a
        # live session (its start now, its status at the end, in this run's own events) needs the writer's file
        # writer, a private method (tests/test_tracking.py fails if torch drops it).
        file_writer = self.writer._get_file_writer()
        file_writer.add_summary(summary_v2.hparams_config_pb(hparams, metrics))
        file_writer.add_summary(summary_v2.hparams_pb(params, start_time_secs=time.time()))
        self.writer.add_text("run", _markdown_table({"name": run.name, **run.tags()}), self.step)
        self.writer.add_text("config", _markdown_table(params), self.step)
        for epoch in with_running_best(run.history):
            self.log_epoch(epoch)
        self.writer.flush()

    def log_epoch(self, epoch: dict[str, Any]) -> None:
        self.step = int(epoch["epoch"])
        for name, value in epoch_metrics(epoch).items():
            self.writer.add_scalar(name, value, self.step)
        self.writer.flush()

    def finish(self, results: dict[str, Any], final: dict[str, float]) -> None:
        for name, value in final.items():
            self.writer.add_scalar(name, value, self.step)
        status = str(results.get("status"))
        error = results.get("error") or ""
        self.writer.add_text("status", f"{status}: {error}" if error else status, self.step)
        self.writer._get_file_writer().add_summary(_session_end_pb(status))  # see start
        self.writer.close()
