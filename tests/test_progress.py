"""The progress lines of a sweep: each job leaves a note when it ends; the launching command counts its own."""

from __future__ import annotations

import json
import re

from agnews.sweep.progress import JOB_END_FILE, Progress, note_job_end


def test_lines_count_this_launchs_jobs_and_estimate_the_rest(tmp_path):
    progress = Progress(tmp_path, "launch-a", total=5, at_once=2)
    for job, status, seconds in (("0", "completed", 10.0), ("1", "failed", 30.0)):
        (tmp_path / job).mkdir()
        note_job_end(tmp_path / job, f"launch-a/{job}", status, seconds)
    (tmp_path / "2").mkdir()
    note_job_end(tmp_path / "2", "launch-b/2", "completed", 1.0)  # another command's job, on the same study
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / JOB_END_FILE).write_text("{half")  # being written: read at the next poll
    lines = progress.poll()
    assert len(lines) == 2 and sorted(progress.ended) == ["0", "1"]
    last = next(line for line in lines if "2/5" in line)
    # 3 jobs left, 2 at a time: two rounds of the ended jobs' mean time (20 s).
    assert re.fullmatch(
        r"Job [01] \w+ \| 2/5 done: 1 completed, 1 failed, 0 diverged \| 0:0\d elapsed, about 0:40 left", last
    )
    assert progress.poll() == []  # each job once
    (tmp_path / "3" / JOB_END_FILE).write_text(
        json.dumps({"launch_job": "launch-a/3", "status": "pruned", "seconds": 5})
    )
    assert progress.poll()[0].startswith("Job 3 pruned | 3/5 done: 1 completed, 1 failed, 0 diverged, 1 pruned")
    assert progress.closing().startswith("Sweep ended: 3/5 jobs ended (1 completed, 1 failed, 0 diverged, 1 pruned)")


def test_a_job_without_a_launch_leaves_no_note(tmp_path):
    note_job_end(tmp_path, None, "completed", 1.0)  # a single run
    assert not (tmp_path / JOB_END_FILE).exists()
