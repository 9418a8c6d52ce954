"""optuna-dashboard serving an agnews study, seen in a real browser: the study stored as
hparams_search=bilstm_glove50_optuna stores it (optuna.db in the sweep folder, study bilstm_glove50), the
`optuna-dashboard` command started on it as a user would, then headless Chromium through Selenium opens the
study list, the study page (its Hyperparameter Importance card), the trial list and the JSON API behind them.

Needs optuna-dashboard (0.21 needs Optuna >= 3.6), selenium (the dev extra) and Chromium with its driver
(Debian: apt-get install chromium chromium-driver; .ci/run installs them). Nothing leaves 127.0.0.1:
Selenium is given the driver's path, so Selenium Manager never runs, and Chromium's background services are
off."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

optuna = pytest.importorskip("optuna")
pytest.importorskip("optuna_dashboard", reason="needs optuna-dashboard (pip install optuna-dashboard; Optuna >= 3.6)")
pytest.importorskip("selenium", reason="the dev extra (pip install -e '.[dev]')")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEARCH_CONFIG = REPO / "conf" / "hparams_search" / "bilstm_glove50_optuna.yaml"

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Chromium and its driver on PATH (Debian: apt-get install chromium chromium-driver)",
)

# Verified on this project's machines as root in a closed network: without the background-networking
# switches Chromium keeps trying (and failing) to reach Google's services.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--window-size=1400,1000",
)
WAIT_S = 30  # for a page or the dashboard's server; a busy 2-core machine renders the study page in ~3 s

# What the sweep searches, as Optuna distributions (hydra-optuna-sweeper turns tag(log, interval(a, b)) into a
# log FloatDistribution, interval(a, b) into a FloatDistribution and choice(...) into a CategoricalDistribution).
DISTRIBUTIONS = {
    "optimizer.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
    "model.hidden_size": optuna.distributions.CategoricalDistribution([64, 128, 256]),
    "model.dropout": optuna.distributions.FloatDistribution(0.0, 0.6),
    "model.embedding_dropout": optuna.distributions.FloatDistribution(0.0, 0.6),
    "embedding.freeze": optuna.distributions.CategoricalDistribution([False, True]),
}


@dataclass
class StoredStudy:
    sweep_dir: Path
    storage: str  # sqlite:///<sweep_dir>/optuna.db
    name: str


def search_config() -> Any:
    return OmegaConf.load(SEARCH_CONFIG).hydra.sweeper


@pytest.fixture
def agnews_study(tmp_path: Path) -> StoredStudy:
    """The study a bilstm_glove50_optuna search leaves in its sweep folder, made with Optuna's public API:
    8 completed trials whose accuracy depends mostly on the learning rate and hidden size, one that failed and
    one that the study's pruner stopped after its second epoch (agnews reports its best validation accuracy so
    far after each epoch). The test reads its expectations from the stored study, so a real tiny search can
    replace this."""
    sweeper = search_config()
    assert set(DISTRIBUTIONS) == set(sweeper.params), "DISTRIBUTIONS must follow the search's params"
    sweep_dir = tmp_path / "multirun" / "optuna_bilstm_glove50"
    sweep_dir.mkdir(parents=True)
    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=storage, study_name=sweeper.study_name, direction=sweeper.direction)

    def trial(lr, hidden, dropout, embedding_dropout, freeze, **kwargs):
        params = dict(zip(DISTRIBUTIONS, (lr, hidden, dropout, embedding_dropout, freeze), strict=True))
        study.add_trial(optuna.trial.create_trial(params=params, distributions=DISTRIBUTIONS, **kwargs))

    for lr, hidden, dropout, embedding_dropout, freeze in [
        (3e-3, 256, 0.1, 0.2, False),
        (1e-4, 64, 0.5, 0.1, True),
        (5e-3, 128, 0.3, 0.5, False),
        (2e-4, 256, 0.0, 0.3, True),
        (8e-3, 64, 0.6, 0.0, False),
        (1e-3, 128, 0.2, 0.4, True),
        (4e-4, 64, 0.4, 0.6, False),
        (2e-3, 256, 0.5, 0.2, True),
    ]:
        accuracy = 0.80 + 0.015 * (math.log10(lr) + 4) + 0.005 * (hidden // 64).bit_length() - 0.02 * dropout
        trial(lr, hidden, dropout, embedding_dropout, freeze, value=accuracy)
    trial(1e-2, 128, 0.1, 0.1, False, state=optuna.trial.TrialState.FAIL)  # failed or diverged
    trial(1e-4, 64, 0.6, 0.6, True, state=optuna.trial.TrialState.PRUNED, intermediate_values={1: 0.5, 2: 0.52})
    return StoredStudy(sweep_dir=sweep_dir, storage=storage, name=sweeper.study_name)


def _children() -> dict[int, list[int]]:
    """parent pid -> child pids of the processes that are still running (zombies count as gone)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, ppid = text[text.rindex(")") + 2 :].split()[:2]
        if state not in "ZX":
            children.setdefault(int(ppid), []).append(int(stat.parent.name))
    return children


def process_tree(pid: int) -> set[int]:
    """pid and its running descendants (Linux /proc; empty elsewhere)."""
    if not Path("/proc").is_dir():
        return set()
    children, tree, todo = _children(), set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo.extend(children.get(p, []))
    return tree


def still_running(pids: set[int], wait_s: float = 5.0) -> set[int]:
    deadline = time.monotonic() + wait_s
    while True:
        alive = set(pids) & {p for kids in _children().values() for p in kids}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# urllib without the environment's proxies: the dashboard is on 127.0.0.1
local = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def dashboard(agnews_study: StoredStudy, tmp_path: Path) -> Iterator[str]:
    """`optuna-dashboard <storage> --host 127.0.0.1 --port <free port>` in a subprocess; yields its URL once
    it answers, and stops it (terminate, then kill) whatever the test did."""
    command = shutil.which("optuna-dashboard", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert command, "optuna-dashboard is not on PATH"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "optuna-dashboard.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [command, agnews_study.storage, "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            assert proc.poll() is None, f"optuna-dashboard exited with {proc.returncode}:\n{log.read_text()}"
            try:
                with local.open(f"{url}/api/meta", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, f"optuna-dashboard did not answer in {WAIT_S} s:\n{log.read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        tree = process_tree(proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        left = still_running(tree - {proc.pid})
        kill_all(left)
        assert not left, f"optuna-dashboard left processes {sorted(left)}"


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    """Headless Chromium driven by the system's chromedriver, with a fresh profile; on the way out checks
    that chromedriver and every Chromium process it started are gone."""
    monkeypatch.setenv("SE_OFFLINE", "true")  # belt and braces: with a driver path Selenium Manager never runs
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    tree = process_tree(service.process.pid)
    try:
        driver.set_page_load_timeout(WAIT_S)
        driver.set_script_timeout(WAIT_S)
        yield driver
    finally:
        tree |= process_tree(service.process.pid)
        driver.quit()
        left = still_running(tree)
        kill_all(left)
        assert not left, f"chromedriver/Chromium left processes {sorted(left)}"


@contextlib.contextmanager
def screenshot_on_failure(driver: webdriver.Chrome, path: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            driver.save_screenshot(str(path))
            print(f"screenshot of {driver.current_url}: {path}")
        raise


def page_text(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def wait_for_text(driver: webdriver.Chrome, *texts: str) -> str:
    """Wait until the rendered page shows every one of `texts`; returns the page's text."""
    WebDriverWait(driver, WAIT_S).until(
        lambda d: all(t in page_text(d) for t in texts), message=f"the page never showed all of {texts}"
    )
    return page_text(driver)


def fetch_json(driver: webdriver.Chrome, path: str) -> Any:
    """GET `path` from inside the page (same origin, as the dashboard's own scripts do); its JSON body."""
    result = driver.execute_async_script(
        """
        const [path, done] = arguments;
        fetch(path).then(async r => done({status: r.status, body: await r.json()}))
                   .catch(e => done({status: 0, body: String(e)}));
        """,
        path,
    )
    assert result["status"] == 200, f"GET {path}: {result}"
    return result["body"]


@pytest.mark.slow
@needs_chromium
def test_the_dashboard_shows_an_agnews_study_its_trials_and_parameter_importances(
    agnews_study: StoredStudy, dashboard: str, browser: webdriver.Chrome, tmp_path: Path
):
    study = optuna.load_study(study_name=agnews_study.name, storage=agnews_study.storage)
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name.capitalize() for t in trials)  # the dashboard's spelling: Complete, Fail, ...
    assert {"Complete", "Fail", "Pruned"} <= set(states)
    params = set(DISTRIBUTIONS)

    with screenshot_on_failure(browser, tmp_path / "dashboard-failure.png"):
        # The study list: one study, linking to its page.
        browser.get(dashboard)
        wait_for_text(browser, agnews_study.name)
        link = browser.find_element(
            By.XPATH, f"//a[contains(@href, '/dashboard/studies/')][contains(., '{study.study_name}')]"
        )
        link.click()
        WebDriverWait(browser, WAIT_S).until(lambda d: d.current_url.rstrip("/").split("/")[-1].isdigit())
        study_url = browser.current_url.rstrip("/")
        study_id = int(study_url.split("/")[-1])
        assert study_url == f"{dashboard}/dashboard/studies/{study_id}"

        # The JSON API behind the pages, fetched by the page.
        listed = fetch_json(browser, "/api/studies")["study_summaries"]
        assert [(s["study_id"], s["study_name"], s["directions"]) for s in listed] == [
            (study_id, agnews_study.name, ["maximize"])
        ]
        detail = fetch_json(browser, f"/api/studies/{study_id}")
        assert detail["name"] == agnews_study.name
        assert [t["number"] for t in detail["trials"]] == [t.number for t in trials]
        assert Counter(t["state"] for t in detail["trials"]) == states
        assert [t["number"] for t in detail["best_trials"]] == [study.best_trial.number]
        assert {p["name"] for p in detail["union_search_space"]} == params
        assert {t["number"]: t["values"] for t in detail["trials"] if t["state"] == "Complete"} == {
            t.number: ["-inf" if t.value == -math.inf else t.value]
            for t in trials
            if t.state == optuna.trial.TrialState.COMPLETE
        }
        (importances,) = fetch_json(browser, f"/api/studies/{study_id}/param_importances")["param_importances"]
        importance = {entry["name"]: entry["importance"] for entry in importances}
        assert set(importance) == params
        assert all(v >= 0 for v in importance.values()) and math.isclose(sum(importance.values()), 1, rel_tol=1e-6)
        # Not the dashboard's fallback when it cannot compute them (every parameter 1/n).
        assert max(importance.values()) - min(importance.values()) > 0.05, importance

        # The study page: its name, and the Hyperparameter Importance card plotting those importances.
        wait_for_text(browser, f"{agnews_study.name} (id={study_id})", "Hyperparameter Importance", "History")
        plot = browser.find_element(By.ID, "graph-hyperparameter-importances")
        WebDriverWait(browser, WAIT_S).until(
            lambda _: len(plot.find_elements(By.CSS_SELECTOR, "g.ytick text")) == len(params),
            message="the importance plot never showed one bar per parameter",
        )
        shown = {e.get_attribute("textContent") for e in plot.find_elements(By.CSS_SELECTOR, "g.ytick text")}
        assert shown == params
        bar_labels = sorted(e.get_attribute("textContent") for e in plot.find_elements(By.CSS_SELECTOR, "text.bartext"))
        assert bar_labels == sorted(f"{v:.2f}" for v in importance.values())
        browser.save_screenshot(str(tmp_path / "study.png"))

        # The trial list: every trial by number, its count and the three states.
        browser.get(f"{study_url}/trials")
        text = wait_for_text(browser, f"{len(trials)} Trials", *(f"Trial {t.number}" for t in trials))
        for state in states:
            assert state in text
        assert "Best Trial" in text
