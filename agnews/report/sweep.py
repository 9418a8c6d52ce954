"""Sweep folders: their job folders (each read by `results.read_job`), the newest sweep, and the one
notion of which settings a sweep varies, shared by summary.csv and the report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from agnews.config import NOT_PART_OF_THE_RUN
from agnews.results import BASIC_SWEEPER, DATA_KEY, RESULTS_FILE, JobRecord, RunStatus, read_job
from agnews.storage import AgnewsError

SUMMARY_FILE = "summary.csv"
GROUP_KEYS = ("embedding", "model", "optimizer")  # config groups: labelled by their option's name
EXPECTED = "a sweep folder such as multirun/<date>/<time>/ holding job folders 0/, 1/, ... with results.json"


def find_job_dirs(sweep_dir: Path) -> list[Path]:
    """Job folders of a sweep: direct children holding results.json or Hydra's .hydra/ folder,
    numerically ordered when named by job number."""
    jobs = [
        child
        for child in sweep_dir.iterdir()
        if child.is_dir() and ((child / RESULTS_FILE).exists() or (child / ".hydra").is_dir())
    ]

    def job_order(path: Path) -> tuple[bool, int, str]:
        return (not path.name.isdigit(), int(path.name) if path.name.isdigit() else 0, path.name)

    return sorted(jobs, key=job_order)


def read_sweep(sweep_dir: Path) -> list[JobRecord]:
    """Every job of a sweep, or an error saying what the folder holds instead of a sweep."""
    if not sweep_dir.is_dir():
        what = "is not a folder" if sweep_dir.exists() else "does not exist"
        raise AgnewsError(f"{sweep_dir} {what}: expected {EXPECTED}")
    jobs = find_job_dirs(sweep_dir)
    if not any((job / RESULTS_FILE).exists() for job in jobs):
        found = f"{len(jobs)} job folders but no {RESULTS_FILE} in any" if jobs else "no job folders"
        if (sweep_dir / SUMMARY_FILE).exists():
            found += f" (only {SUMMARY_FILE})"
        inner = [sub for sub in [*sweep_dir.glob("*/"), *sweep_dir.glob("*/*/")] if _has_jobs(sub)]
        # a multirun root or a date folder: point at a sweep inside it
        hint = f"; it contains sweeps, e.g. {max(inner, key=sweep_sort_key)}" if inner else ""
        raise AgnewsError(f"{sweep_dir} is not an agnews sweep: found {found}, expected {EXPECTED}{hint}")
    return mark_copies([read_job(job) for job in jobs])


def mark_copies(jobs: list[JobRecord]) -> list[JobRecord]:
    """The jobs, with status `copy` for every folder whose run is counted elsewhere: a second folder of the
    same run (the same run id: `cp -r S/0 S/2`), or a run that recorded another sweep than this folder's (a job
    folder of another sweep, or a single run, copied in). This folder's sweep is the one its jobs recorded that
    resolves to it, else (a sweep moved elsewhere, off a cluster, whose jobs all recorded the old path) the
    one most of them recorded; a job that ran where it is, is never a copy."""
    home = {job.recorded_sweep for job in jobs if job.run_id and _in_place(job)}
    recorded = Counter(job.recorded_sweep for job in jobs if job.run_id and job.recorded_sweep)
    if recorded:
        home.add(recorded.most_common(1)[0][0])

    def where(job: JobRecord) -> str:
        return f"{job.recorded_sweep} job {job.recorded_job}" if job.recorded_sweep else "a single run's folder"

    def own(job: JobRecord) -> bool:  # its own folder: counted before a copy of it
        return job.recorded_sweep in home and job.recorded_job == job.job

    counted: dict[str, JobRecord] = {}
    notes: dict[Path, str] = {}
    for job in sorted((job for job in jobs if job.run_id), key=lambda job: (not _in_place(job), not own(job))):
        if job.run_id in counted:
            notes[job.folder] = (
                f"copy of job {counted[job.run_id].job} (the same run: its results.json has that run id)"
            )
        elif home and job.recorded_sweep not in home:
            notes[job.folder] = f"copied in from {where(job)} (its results.json records that, not this sweep)"
        else:
            counted[job.run_id] = job
    return [
        replace(job, status=RunStatus.copy.value, error=notes[job.folder]) if job.folder in notes else job
        for job in jobs
    ]


def _in_place(job: JobRecord) -> bool:
    """Whether a job ran in the folder it is in: the sweep and job number it recorded are this folder's."""
    if job.recorded_sweep is None or job.recorded_job != job.job:
        return False
    try:
        return Path(job.recorded_sweep).resolve() == job.folder.parent.resolve()
    except OSError:
        return False


def holds_single_runs(jobs: Iterable[JobRecord]) -> bool:
    """Whether the folders are single runs side by side (none recorded a sweep), not a sweep's jobs."""
    recorded = [job for job in jobs if job.run_id]
    return bool(recorded) and all(job.recorded_sweep is None for job in recorded)


def _has_jobs(folder: Path) -> bool:
    return folder.is_dir() and bool(find_job_dirs(folder))


def sweep_sort_key(sweep: Path) -> tuple[str, str]:
    """Orders sweeps oldest to newest by Hydra's <date>/<time> folder names, which sort in time order
    (mtimes do not survive a copy off a cluster)."""
    resolved = Path(sweep).resolve()
    return resolved.parent.name, resolved.name


def find_latest_sweep(root: Path) -> Path:
    """The newest <root>/<date>/<time>/ folder that holds job folders."""
    root = Path(root)
    sweeps = [sweep for day in sorted(root.glob("*/")) for sweep in day.glob("*/") if _has_jobs(sweep)]
    if not sweeps:
        raise AgnewsError(f"No sweep under {root}: expected {root}/<date>/<time>/ folders holding job folders")
    return max(sweeps, key=sweep_sort_key)


def swept_keys(jobs: Iterable[JobRecord], declared: Iterable[str] = ()) -> list[str]:
    """The settings a set of jobs varies: any config group or overridden key whose label differs between
    the jobs that know it, except settings that do not change results; plus `declared`, the keys a launch
    swept on purpose (even trainer.num_threads); plus any other setting of the recorded configs that varies
    while no key above explains it (`embedding.freeze` between `glove50` and `glove50_frozen`, both named
    glove50). Groups first, then the other keys in alphabetical order."""
    jobs, declared = list(jobs), set(declared)
    candidates = {*GROUP_KEYS, DATA_KEY} | {key for job in jobs for key in job.overrides} | declared
    keys = [
        key
        for key in candidates
        if not key.startswith("hydra.")
        and (key in declared or (key not in NOT_PART_OF_THE_RUN and len({job.label(key) for job in jobs} - {None}) > 1))
    ]
    for setting in sorted({setting for job in jobs for setting in _settings(job.config)} - set(keys)):
        if (
            setting not in NOT_PART_OF_THE_RUN
            and _varies(jobs, setting)
            and not any(_determines(jobs, key, setting) for key in keys)
        ):
            keys.append(setting)
    return sorted(keys, key=lambda key: (GROUP_KEYS.index(key) if key in GROUP_KEYS else len(GROUP_KEYS), key))


# The sections of a config that describe what a run computes; data.* differs by path between machines.
_SECTIONS = ("embedding", "model", "optimizer", "trainer")


def _settings(config: dict) -> list[str]:
    """Dotted names of the leaf settings in the sections of a recorded config that describe the run."""
    return [
        f"{section}.{name}"
        for section in _SECTIONS
        if isinstance(config.get(section), dict)
        for name, value in config[section].items()
        if not isinstance(value, dict | list)
    ]


def _varies(jobs: list[JobRecord], key: str) -> bool:
    return len({job.label(key) for job in jobs} - {None}) > 1


def _determines(jobs: list[JobRecord], key: str, setting: str) -> bool:
    """Whether the jobs that know `setting` have one value of it per value of `key` (the option explains it)."""
    seen: dict[str | None, str] = {}
    known = [(job.label(key), value) for job in jobs if (value := job.label(setting)) is not None]
    return all(seen.setdefault(label, value) == value for label, value in known)


def proposed_by_sweeper(job: JobRecord) -> bool:
    """Whether an optimising sweeper (Optuna, Nevergrad, Ax) chose the job's settings: its swept values are
    then points of a search, not levels to group runs by."""
    return job.sweeper is not None and job.sweeper != BASIC_SWEEPER
