"""End to end in a real browser: JupyterLab + headless Chromium run notebook 00, move the
training panel's learning-rate slider, press Run and see the rendered output change.

The notebook is copied to a temporary folder with ``PROFILE = "smoke"`` (and the
scikit-learn digits when the MNIST files are not configured), JupyterLab serves that
folder on a free localhost port with a random token, and Selenium drives Debian's
Chromium through the system chromedriver.  Screenshots go to ``test-artifacts/``.
If Chromium is missing the test installs it with apt-get (as CI does, running as
root) and skips, saying why, only where that is impossible.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, real_data_dir

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "test-artifacts"
NOTEBOOK = "00_getting_started.ipynb"
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic", "--window-size=1400,1800")


# --------------------------------------------------------------------------- setup helpers


def ensure_chromium() -> None:
    """Chromium and chromedriver at /usr/bin, installed with apt-get if need be, else skip."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    how = "install them with `apt-get install chromium chromium-driver`"
    if shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} is missing and there is no apt-get to install them; {how}")
    if os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} is missing and installing needs root; {how}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update"], env=env, check=True, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
                       env=env, check=True, capture_output=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        out = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"could not install Chromium with apt-get ({exc}; {out.decode(errors='replace')[-300:]}); {how}")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"apt-get ran but {CHROMIUM} / {CHROMEDRIVER} are still missing; {how}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smoke_copy(folder: Path) -> Path:
    """Notebook 00 with its parameters cell set to the smoke profile (digits if no MNIST)."""
    nb = nbformat.read(REPO / "notebooks" / NOTEBOOK, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    src = re.sub(r'^PROFILE = "\w+"', 'PROFILE = "smoke"', cell.source, flags=re.M)
    if real_data_dir() is None:
        src = re.sub(r'^DATASET = "[\w-]+"', 'DATASET = "digits"', src, flags=re.M)
    assert 'PROFILE = "smoke"' in src and re.search(r"^INTERACTIVE = True", src, re.M), src
    cell.source = src
    path = folder / NOTEBOOK
    nbformat.write(nb, path)
    return path


def start_jupyter(root: Path, work: Path, port: int, token: str) -> subprocess.Popen:
    # A person's kernel: inline plots, progress bars, widgets on (whatever nbval or CI set).
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPLBACKEND", "PYTEST_CURRENT_TEST", "COURSE_PROGRESS", "COURSE_INTERACTIVE")}
    env.update(COURSE_PROFILE="smoke", COURSE_RESULTS_DIR=str(work / "results"), COURSE_RUNS=str(work / "runs"),
               JUPYTERLAB_SETTINGS_DIR=str(work / "lab-settings"), JUPYTERLAB_WORKSPACES_DIR=str(work / "lab-ws"),
               JUPYTER_RUNTIME_DIR=str(work / "runtime"))
    # Silence the "news" and update notifications, which would cover part of the page.
    settings = work / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                           "checkForUpdates": False}))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--ServerApp.token={token}",
           f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False"]
    log = open(work / "jupyter.log", "wb")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_server(proc: subprocess.Popen, url: str, timeout: float, log: Path) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"JupyterLab did not answer within {timeout:.0f} s:\n{log.read_text(errors='replace')[-2000:]}")


def api(base: str, token: str, path: str, body: dict | None = None) -> dict | list:
    """One call to the Jupyter server's REST API (POST when there is a body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{base}{path}", data=data, method="GET" if body is None else "POST",
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)


def start_session(base: str, token: str, notebook: Path) -> None:
    """Start the notebook's kernel on the server before any browser opens the notebook.

    JupyterLab then joins this session instead of starting a kernel itself.  Left to the page,
    the start raced with the page load on a busy CI machine: once a "Select Kernel" dialog covered
    the notebook, once a second kernel replaced the first and "Run All" went to the one that died.
    (The server reports the kernel "starting" until a client asks it something, so the test
    waits for the page's kernel indicator to read idle, not for the server.)
    """
    kernel = nbformat.read(notebook, as_version=4).metadata.get("kernelspec", {}).get("name", "python3")
    api(base, token, "/api/sessions",
        {"path": notebook.name, "name": notebook.name, "type": "notebook", "kernel": {"name": kernel}})


def stop_jupyter(proc: subprocess.Popen, base: str, token: str) -> None:
    """Shut the server down through its API (which stops the kernel), then make sure."""
    try:
        req = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                     headers={"Authorization": f"token {token}"})
        urllib.request.urlopen(req, timeout=5).close()
        proc.wait(timeout=15)
    except Exception:  # noqa: BLE001 - fall back to signals
        pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- the test


def test_notebook_00_training_panel_in_chromium(tmp_path):
    ensure_chromium()
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a dependency: pip install -e .")
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    root = tmp_path / "notebooks"
    root.mkdir()
    notebook = smoke_copy(root)
    port, token = free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    proc = start_jupyter(root, tmp_path, port, token)
    driver = None
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "browser_00_failure.png").unlink(missing_ok=True)  # only this run's failure, if any
    try:
        wait_for_server(proc, f"{base}/api/status?token={token}", 60, tmp_path / "jupyter.log")
        start_session(base, token, notebook)

        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in CHROME_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tmp_path / 'chrome-profile'}")
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
        driver.set_page_load_timeout(60)
        driver.get(f"{base}/lab/tree/{NOTEBOOK}?token={token}")

        def wait(seconds: float, what: str, condition):
            # The panel re-renders its table and status while a run streams in, so an element
            # found a moment ago can be gone by the time it is read: poll again instead of failing.
            return WebDriverWait(driver, seconds, poll_frequency=0.25,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(
                condition, message=f"waiting for {what}")

        def kernel_idle(d) -> bool:
            ind = d.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator")
            return bool(ind) and ind[0].get_attribute("data-status") == "idle"

        def ready(d) -> bool:
            # Should a kernel dialog still appear, accept its choice (the notebook's own kernel).
            accept = d.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept")
            if accept:
                accept[0].click()
                return False
            return kernel_idle(d)

        wait(60, "the notebook, no dialog and an idle kernel", ready)

        def started(d) -> bool:
            # A code cell's prompt reads [*] while it waits or runs and [n] once it has run.
            return any(re.search(r"\[(\*|\d+)\]", p.text)
                       for p in d.find_elements(By.CSS_SELECTOR, ".jp-CodeCell .jp-InputPrompt"))

        # Run > Run All Cells; once more should the first click not reach the kernel.
        for attempt in (1, 2):
            menu = next(e for e in driver.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-item")
                        if e.text.strip() == "Run")
            menu.click()
            wait(10, "Run All Cells in the Run menu", lambda d: [
                e for e in d.find_elements(By.CSS_SELECTOR, ".lm-Menu-item")
                if e.text.startswith("Run All Cells")])[0].click()
            try:
                wait(60, "the first cell to start", started)
                break
            except TimeoutException:
                if attempt == 2:
                    raise
                print("Run All Cells started no cell within 60 s; clicking it again")

        panel = wait(300, "the training panel",
                     lambda d: (d.find_elements(By.CSS_SELECTOR, ".course-panel") or [None])[0])
        wait(300, "the notebook to finish", kernel_idle)
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", panel)

        def slider(label: str):
            for s in panel.find_elements(By.CSS_SELECTOR, ".widget-slider"):
                if s.find_element(By.CSS_SELECTOR, ".widget-label").text.strip() == label:
                    return s
            raise AssertionError(f"no slider labelled {label!r} in the panel")

        def text(css: str) -> str:
            # One JavaScript call reads the element in the same instant it is found (no stale handles).
            value = driver.execute_script(
                "const e = arguments[0].querySelector(arguments[1]); return e ? e.innerText.trim() : null;",
                panel, css)
            if value is None:
                raise AssertionError(f"the panel has no {css} element")
            return value

        def image_src() -> str:
            return driver.execute_script(
                "const e = arguments[0].querySelector('.course-figure'); return e ? (e.getAttribute('src') || '') : '';",
                panel)

        def rows() -> list[str]:
            return driver.execute_script(
                "return Array.from(arguments[0].querySelectorAll('.course-table tbody tr'), r => r.innerText.trim());",
                panel)

        def run_and_wait(n_rows: int) -> None:
            panel.find_element(By.CSS_SELECTOR, "button.course-run").click()
            wait(180, f"run {n_rows} to finish",
                 lambda d: len(rows()) == n_rows and "done after" in text(".course-status"))

        assert text(".course-status") == "" and not rows()
        run_and_wait(1)
        first_src, first_row = image_src(), rows()[0]
        assert first_src.startswith("blob:") or first_src.startswith("data:"), first_src

        lr = slider("learning rate")
        before = lr.find_element(By.CSS_SELECTOR, ".widget-readout").text
        handle = lr.find_element(By.CSS_SELECTOR, ".noUi-handle")
        handle.click()
        handle.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
        wait(10, "the slider readout to change",
             lambda d: lr.find_element(By.CSS_SELECTOR, ".widget-readout").text != before)
        after = float(lr.find_element(By.CSS_SELECTOR, ".widget-readout").text)
        assert after > float(before), (before, after)

        run_and_wait(2)
        newest = rows()[0]  # the table lists the newest run first
        lr_shown = float(re.search(r"lr=([0-9.e+-]+)", newest).group(1))
        assert lr_shown == pytest.approx(after, rel=0.05), (newest, after)
        assert newest != first_row and image_src() != first_src
        panel.screenshot(str(ARTIFACTS / "browser_00_training_panel.png"))
        driver.save_screenshot(str(ARTIFACTS / "browser_00_window.png"))
    except (TimeoutException, AssertionError):
        if driver is not None:
            driver.save_screenshot(str(ARTIFACTS / "browser_00_failure.png"))
            # What the page showed, for a CI log that has no screenshot: open dialogs, error outputs.
            print("dialogs:", driver.execute_script(
                "return Array.from(document.querySelectorAll('.jp-Dialog'), e => e.innerText.trim());"))
            print("error outputs:", driver.execute_script(
                "return Array.from(document.querySelectorAll('.jp-OutputArea-output[data-mime-type*=\"error\"],"
                " .jp-OutputArea-output[data-mime-type*=\"stderr\"]'), e => e.innerText.trim().slice(-600));"))
        try:
            print("sessions:", api(base, token, "/api/sessions"))
        except OSError as exc:
            print("sessions: unavailable,", exc)
        print("jupyter.log (tail):\n" + (tmp_path / "jupyter.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        if driver is not None:
            driver.quit()
        stop_jupyter(proc, base, token)
