"""StudySweeper (`hydra/sweeper=optuna_study`, the hparams_search presets): a Hydra sweeper that works an Optuna
study with its ask-and-tell interface.

Hydra's Optuna sweeper plugin numbers every command's jobs from 0, cannot record a trial as pruned, and takes
a job's return value for the truth. This one:
- launches trial N as job N (job folder N), also when several commands work on one study at once;
- tells Optuna what each job recorded in its results.json: completed (its best validation accuracy), pruned
  (stopped by the study's pruner, TrialPruning in the job), or failed (failed, diverged, killed);
- builds its sampler and pruner from `hydra.sweeper.sampler` / `hydra.sweeper.pruner` (conf/hydra/sweeper/),
  and writes optimization_results.yaml (the best trial so far) at the end.
It is a Hydra plugin through the entry point in pyproject.toml (group hydra.plugins).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from agnews.config import ConfigError, to_app_config
from agnews.results import RunStatus, read_job
from agnews.storage import atomic_write_text, sqlite_file
from agnews.sweep import record_launched, refuse, refuse_on_error
from agnews.sweep.guard import LOCAL_LAUNCHERS
from agnews.sweep.plan import without_hydra
from agnews.sweep.study import (
    PRUNERS,
    SAMPLERS,
    check_folder,
    check_same_settings,
    check_search,
    open_study,
    shared_settings,
    study_lock,
)

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"


class StudySweeper(Sweeper):
    def __init__(
        self,
        direction: str,
        study_name: str | None,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        params: DictConfig | None,
        sampler: DictConfig | None,
        pruner: DictConfig | None,
    ) -> None:
        self.direction, self.study_name, self.storage = direction, study_name, storage
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.params = OmegaConf.to_container(params) if params is not None else {}
        self.sampler_config, self.pruner_config = sampler, pruner

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def sweep(self, arguments: list[str]) -> None:
        # Everything that can be refused is, before the study's storage is created or touched.
        check_search(self.config)
        if self.storage is None or self.study_name is None:
            refuse("hydra.sweeper.storage and hydra.sweeper.study_name must name the study, so it can be continued")
        app = refuse_on_error(lambda: to_app_config(without_hydra(self.config)))
        if self.config.hydra.launcher.get("_target_") in LOCAL_LAUNCHERS:
            from agnews.devices import check_device  # torch: only where trials run here

            refuse_on_error(lambda: check_device(app.trainer))
        try:
            space, fixed = search_space(self.params, arguments)
        except Exception as error:  # Hydra's OverrideParseException, or a sweep a search cannot take
            refuse(f"hydra.sweeper.params: {' '.join(str(error).split())}")
        sampler = instantiate(self.sampler_config, _execution_whitelist_=SAMPLERS) if self.sampler_config else None
        pruner = instantiate(self.pruner_config, _execution_whitelist_=PRUNERS) if self.pruner_config else None
        storage_file = sqlite_file(self.storage)
        if storage_file is not None and not storage_file.exists():  # no study yet: refuse without creating one
            check_folder(self.sweep_dir, None, self.storage, self.study_name)
        study = open_study(self.storage, self.study_name, self.direction, sampler, pruner)
        with study_lock(self.storage, self.study_name):
            check_folder(self.sweep_dir, study, self.storage, self.study_name)
            check_same_settings(study, shared_settings(app, set(space)), self.sweep_dir)
        before = len(study.get_trials(deepcopy=False))
        log.info(
            "Study %s in %s: %d trials so far; %d more, %d at a time, sampler %s, pruner %s",
            self.study_name,
            self.storage,
            before,
            self.n_trials,
            self.n_jobs,
            type(study.sampler).__name__,
            type(study.pruner).__name__,
        )
        remaining = self.n_trials
        while remaining > 0:
            batch = self._ask(study, space, min(self.n_jobs, remaining))
            remaining -= len(batch)
            self._run(study, batch, fixed)
        self._write_best(study)

    def _ask(self, study: Any, space: dict[str, Any], count: int) -> list[Any]:
        # Under the study's lock, so that a batch's trial numbers are consecutive: they are its job numbers. (A
        # storage on a database server has no lock here: another command's trials may come between, and the
        # batch is then launched in runs of consecutive numbers, _consecutive.)
        with study_lock(self.storage, self.study_name):
            return [study.ask(space) for _ in range(count)]

    def _run(self, study: Any, trials: list[Any], fixed: list[str]) -> None:
        import optuna

        told: set[int] = set()
        try:
            for start, run in _consecutive(trials):
                overrides = [[*fixed, *_overrides(trial.params)] for trial in run]
                record_launched({str(trial.number) for trial in run})
                returns = self.launcher.launch(overrides, initial_job_idx=start)
                for trial, job in zip(run, returns, strict=True):
                    state, value = _outcome(self._job_dir(job, trial.number))
                    study.tell(trial, value if state == optuna.trial.TrialState.COMPLETE else None, state=state)
                    told.add(trial.number)
        finally:  # Ctrl-C, a launcher that failed: the study keeps no trial RUNNING forever
            for trial in trials:
                if trial.number not in told:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def _job_dir(self, job: Any, number: int) -> Path:
        config = getattr(job, "hydra_cfg", None)
        output_dir = OmegaConf.select(config, "hydra.runtime.output_dir") if config is not None else None
        return Path(output_dir) if output_dir else self.sweep_dir / str(number)

    def _write_best(self, study: Any) -> None:
        import optuna

        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if not done:
            log.warning("No trial of study %s completed, so it has no best trial yet", self.study_name)
            return
        best = study.best_trial
        summary = {"name": "optuna", "best_trial": best.number, "best_params": best.params, "best_value": best.value}
        atomic_write_text(self.sweep_dir / RESULTS_FILE, OmegaConf.to_yaml(OmegaConf.create(summary)))
        log.info("Best trial so far: %d (%s), value %.4f", best.number, best.params, best.value)


def _consecutive(trials: list[Any]) -> Iterator[tuple[int, list[Any]]]:
    """The trials in runs of consecutive numbers, each launched as one batch numbered from its first trial."""
    run: list[Any] = []
    for trial in trials:
        if run and trial.number != run[-1].number + 1:
            yield run[0].number, run
            run = []
        run.append(trial)
    if run:
        yield run[0].number, run


def _outcome(job_dir: Path) -> tuple[Any, float | None]:
    """What to tell Optuna of a job: its state, and the value of a completed one, from its own results.json."""
    import optuna

    job = read_job(job_dir)
    value = job.metrics.get("best_val_acc")
    if job.status == RunStatus.completed and isinstance(value, int | float):
        return optuna.trial.TrialState.COMPLETE, float(value)
    if job.status == RunStatus.pruned:
        return optuna.trial.TrialState.PRUNED, None
    log.warning("Trial of job %s is told FAIL: %s %s", job_dir.name, job.status, job.error)
    return optuna.trial.TrialState.FAIL, None


def _overrides(params: dict[str, Any]) -> list[str]:
    """A trial's values as command-line overrides (floats in full: repr round-trips them exactly)."""
    return [f"{key}={_override_value(value)}" for key, value in params.items()]


def _override_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    return text if re.fullmatch(r"[A-Za-z_][\w./-]*", text) else json.dumps(text)


def search_space(params: dict[str, Any], arguments: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """The Optuna distributions of the searched keys (hydra.sweeper.params, and any sweep of the command line:
    choice(...), interval(a, b), tag(log, interval(a, b)), range(...)), and the command's other overrides, which
    every job gets as they are."""
    texts = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    space, fixed = {}, {}
    for override in OverridesParser.create().parse_overrides(texts):
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = _distribution(override)
            fixed.pop(key, None)
        else:  # a key the command sets is fixed, also when the search would vary it
            fixed[key] = f"{key}={override.get_value_element_as_str()}"
            space.pop(key, None)
    return space, list(fixed.values())


def _distribution(override: Override) -> Any:
    import optuna

    value = override.value()
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return optuna.distributions.IntDistribution(value.start, value.end, log=log_scale)
        return optuna.distributions.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    if isinstance(value, ChoiceSweep | RangeSweep):
        return optuna.distributions.CategoricalDistribution(list(override.sweep_iterator()))
    raise ConfigError(f"{override.input_line}: a search takes choice(...), interval(...) or range(...)")
