"""The comparison flow users named, in a real browser: `growsearch ui`, headless Debian
Chromium driven by Selenium. Chromium and chromium-driver come from apt (`.ci/run`
installs them as root); where they are missing the test skips and says so."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest
from conftest import tiny_search_config
from mlflow.tracking import MlflowClient

from growsearch.search import load_config, run_search
from growsearch.tracking import default_uri

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _numbers(text):
    return [float(t) for t in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]


@pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
                           ".ci/run installs them when run as root)")
def test_mlflow_ui_compare_flow_in_a_real_browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    out = tmp_path / "run"
    run_search(load_config(tiny_search_config(name="browser", candidates=3, promotion={"policy": "top_k", "k": 2},
                                              training={"epochs": 2, "batch_size": 64}, tracking={"enabled": True})),
               out)
    client = MlflowClient(default_uri(out))
    exp = client.get_experiment_by_name("browser")
    runs = client.search_runs([exp.experiment_id])
    children = {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}
    trained = sorted(name for name, r in children.items() if "final_accuracy" in r.data.metrics)
    assert len(children) == 3 and len(trained) == 2

    port = _free_port()
    ui = subprocess.Popen([sys.executable, "-m", "growsearch.cli", "ui", str(out), "--port", str(port)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    browser = None
    try:
        url = _printed_url(ui, port)
        assert "workflowType=machine_learning" in url
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", "--window-size=1600,1000"):
            opts.add_argument(arg)
        browser = webdriver.Chrome(service=Service(DRIVER), options=opts)
        wait = WebDriverWait(browser, 60)
        browser.get(url)

        def links(prefix):
            found = [a for a in browser.find_elements(By.CSS_SELECTOR, "a[href*='/runs/']")
                     if a.text.startswith(prefix)]
            return found or None

        # the runs page, in the model-training view: the search's parent run, no GenAI overview
        parent = wait.until(lambda _: links("browser"))[0]
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "Detect Issues" not in body and "Token Usage" not in body
        # the parent expands to one child per candidate, named with its plan
        row = parent.find_element(By.XPATH, "./ancestor::div[@role='row']")
        row.find_element(By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']").click()
        shown = wait.until(lambda _: links("c0") if len(links("c0") or []) == 3 else None)
        assert sorted(a.text for a in shown) == sorted(children)
        for name, r in children.items():
            assert name == f"{r.data.tags['growsearch.candidate']} {r.data.params['plan_name']}"
        # select the two trained children and press Compare
        for a in shown:
            if a.text in trained:
                run_id = a.get_attribute("href").rsplit("/", 1)[1]
                box = browser.find_element(By.CSS_SELECTOR, f"div[role='row'][row-id='{run_id}'] input[type=checkbox]")
                browser.execute_script("arguments[0].click()", box)
        compare = wait.until(lambda _: [b for b in browser.find_elements(By.TAG_NAME, "button")
                                        if b.text.strip() == "Compare"] or None)
        compare[0].click()
        # the metric names sit in a scrolled column (in the page, not all in view); their values show
        wait.until(lambda _: "compare-runs" in browser.current_url and "manifold_metric" in browser.page_source)
        time.sleep(2)  # let both runs' values render
        body = browser.find_element(By.TAG_NAME, "body").text
        assert all(name in body for name in trained) and "final_accuracy" in browser.page_source
        values = _numbers(body)
        for name in trained:  # both runs' numbers, side by side on one page
            for key in ("manifold_metric", "final_accuracy"):
                value = children[name].data.metrics[key]
                assert any(abs(v - value) < 1e-3 for v in values), (name, key, value)
    finally:
        if browser is not None:
            browser.quit()
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _printed_url(ui, port):
    """The URL `growsearch ui` prints, once the server answers."""
    line = ui.stdout.readline()
    while f"http://127.0.0.1:{port}/" not in line:
        assert line, "growsearch ui exited"
        line = ui.stdout.readline()
    url = line.strip()
    threading.Thread(target=ui.stdout.read, daemon=True).start()  # keep draining the server's log
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return url
        except OSError:
            assert time.time() < deadline, "the MLflow UI did not start"
            time.sleep(0.5)
