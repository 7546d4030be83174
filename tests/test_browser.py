"""The kit as a learner sees it: JupyterLab and Voila pages in headless Chromium.

JupyterLab serves the committed chapter index with token authentication, and the page must
show the notebook, its committed figures and a connected kernel. Voila serves a notebook
that trains a tiny VAE and shows a dashboard; a key press on the slider in the page must
change the picture, the whole round trip: browser, websocket, kernel callback, new PNG, browser.
Voila also serves the dashboards tour on an empty zoo, so that its dashboards really train:
the page must end with every widget displayed, and no "Error displaying widget" or
"Loading widget..." left by a widget closed after it was shown (a progress bar).

Chromium and its driver are Debian's ``chromium`` and ``chromium-driver`` (``.ci/run``
installs them). Without them these tests skip on a learner's machine, and fail in CI
(``CI=true``), where a skip would hide that they never ran. Chromium gets flags that keep
it off the network, and every server binds to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Iterator

import psutil
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

ROOT = pathlib.Path(__file__).resolve().parent.parent
INDEX = "notebooks/00-index.ipynb"
DASHBOARDS = "notebooks/dashboards.ipynb"
TOKEN = "vaekit-browser-test-token"

SERVER_START_TIMEOUT = 60.0  # seconds until a server answers HTTP
SERVER_STOP_TIMEOUT = 20.0  # seconds for a server and its kernels to exit once asked
PAGE_TIMEOUT = 60.0  # seconds for a page, its figures and its kernel
DASHBOARD_TIMEOUT = 120.0  # seconds for Voila to run the notebook (JAX compiles, a VAE trains)
MOVE_TIMEOUT = 10.0  # seconds from a key press to the new picture
TOUR_TIMEOUT = 240.0  # seconds for Voila to run the dashboards tour on an empty zoo (two points train)
SETTLE_TIMEOUT = 15.0  # seconds for the last widgets to show once the dashboards' pictures are in the page
TOUR_IMAGES = 13  # image widgets of the tour's five dashboards: 4 + 2 + 4 + 2 + 1

# Headless, and off the network: no sync, updates, field trials or QUIC probes of its own.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1024",
)

DASHBOARD_NOTEBOOK = """\
import vaekit as vk

train = vk.load("mnist", "train").take(512)
vae = vk.make_vae(vk.VAEConfig(latent_dim=2), seed=0)
vk.fit(vae, train, config=vk.TrainConfig(epochs=1, batch_size=64), progress=False)
vk.widgets.SampleGallery(vae, rows={rows}, cols={cols})
"""
GALLERY_ROWS, GALLERY_COLS = 3, 4
PYTHON_ERROR = "Traceback (most recent call last)"  # in the page when a cell of the notebook failed
# What the widget manager writes in place of a widget whose model is gone (e.g. a progress bar closed after display).
WIDGET_ERRORS = ("Error displaying widget", "model not found")
WIDGET_LOADING = "Loading widget..."


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, *, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a GET (an error status is an answer too)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


class Server:
    """A server process with its own session; :meth:`stop` ends it and every process it started.

    Kernels run in sessions of their own (jupyter_client starts them so), so they are found
    as the server's descendants before it stops, and any left once it is gone are killed.
    """

    def __init__(self, name: str, command: list[str], *, cwd: pathlib.Path, env: dict[str, str],
                 log_path: pathlib.Path):
        self.name = name
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_until_answering(self, url: str, *, headers: dict[str, str] | None = None) -> int:
        """Polls ``url`` until the server answers; returns the status. Fails if the server exits."""
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.process.returncode} before answering:\n{self.log_tail()}")
            try:
                return http_status(url, headers=headers)
            except OSError:  # not listening yet
                time.sleep(0.2)
        pytest.fail(f"{self.name} did not answer {url} within {SERVER_START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        try:
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        self.process.terminate()  # SIGTERM: Jupyter servers and Voila shut their kernels down
        try:
            self.process.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(SERVER_STOP_TIMEOUT)
        _, alive = psutil.wait_procs(descendants, timeout=SERVER_STOP_TIMEOUT)
        for process in alive:
            process.kill()
        psutil.wait_procs(alive, timeout=SERVER_STOP_TIMEOUT)


def jupyter_env(home: pathlib.Path) -> dict[str, str]:
    """This process's environment, with Jupyter's config, data and runtime folders of its own.

    No user configuration, kernel spec or lab setting changes what the test sees, and
    the servers write their state (workspaces, trust database, connection files) there.
    """
    env = dict(os.environ)
    for variable, folder in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                             ("JUPYTER_RUNTIME_DIR", "runtime")):
        (home / folder).mkdir(parents=True)
        env[variable] = str(home / folder)
    return env


def page_text(driver: WebDriver) -> str:
    return driver.execute_script("return document.body ? document.body.innerText : ''")


def wait_for(driver: WebDriver, condition, timeout: float, what: str, server: Server | None = None,
             screenshot: pathlib.Path | None = None):
    """``condition(driver)``'s first truthy value; on timeout, fails with the page, a screenshot and the log."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)
    except TimeoutException:
        pass  # fails below, outside the handler: the report is the page, not Selenium's traceback
    details = [f"timed out after {timeout:.0f} s waiting for {what}", f"page title: {driver.title!r}"]
    details.append(f"page text: {page_text(driver)[:3000]!r}")
    if screenshot is not None and driver.save_screenshot(str(screenshot)):
        details.append(f"screenshot: {screenshot}")
    if server is not None:
        details.append(f"{server.name} log:\n{server.log_tail()}")
    pytest.fail("\n".join(details))


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[WebDriver]:
    """Headless Chromium driven by chromedriver, with a fresh profile."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        missing = " and ".join(name for name, path in (("chromium", chromium), ("chromedriver", chromedriver))
                               if not path)
        message = f"{missing} not found on PATH: install Debian's chromium and chromium-driver"
        if in_ci():
            pytest.fail(f"{message} (CI=true: the browser tests must run; .ci/run installs them)")
        pytest.skip(message)
    home = tmp_path_factory.mktemp("chromium")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={home / 'profile'}"):
        options.add_argument(flag)
    # Both paths given: Selenium does not run its driver manager (which would reach the network).
    service = Service(chromedriver, log_output=str(home / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(DASHBOARD_TIMEOUT)
    driver.set_script_timeout(PAGE_TIMEOUT)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser) -> Iterator[WebDriver]:
    """The browser, left on a blank page after the test so no page holds a server's websocket."""
    yield browser
    browser.get("about:blank")


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[tuple[str, Server]]:
    """JupyterLab on 127.0.0.1 with the repository as its root and token authentication: its URL and server."""
    home = tmp_path_factory.mktemp("jupyterlab")
    port = free_port()
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={ROOT}", f"--IdentityProvider.token={TOKEN}",
        # Opening a notebook saves a first checkpoint: here, not in the repository's notebooks/.
        f"--FileCheckpoints.checkpoint_dir={home / 'checkpoints'}",
        # Nothing fetched from outside: no news feed, no update check, no PyPI extension listing.
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if os.geteuid() == 0:  # containers often run as root, where the server refuses to start unless told it may
        command.append("--allow-root")
    server = Server("jupyter lab", command, cwd=ROOT, env=jupyter_env(home), log_path=home / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        status = server.wait_until_answering(f"{url}/api/status", headers={"Authorization": f"token {TOKEN}"})
        assert status == 200, f"/api/status with the token answered {status}:\n{server.log_tail()}"
        yield url, server
    finally:
        server.stop()


@contextlib.contextmanager
def voila(notebook: pathlib.Path, home: pathlib.Path, **environment: str) -> Iterator[tuple[str, Server]]:
    """Voila on 127.0.0.1 serving ``notebook``, with extra environment variables: its URL and server."""
    port = free_port()
    command = [
        sys.executable, "-m", "voila", str(notebook), "--no-browser",
        "--Voila.ip=127.0.0.1", f"--Voila.port={port}", "--Voila.port_retries=0",
        "--VoilaConfiguration.show_tracebacks=True",  # an error in the notebook shows in the page, and so in a failure
    ]
    env = {**jupyter_env(home / "jupyter"), **environment}
    server = Server("voila", command, cwd=home, env=env, log_path=home / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_until_answering(f"{url}/favicon.ico")  # any answer: "/" itself would run the notebook
        yield url, server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def voila_dashboard(tmp_path_factory) -> Iterator[tuple[str, Server]]:
    """Voila serving a notebook that trains a tiny VAE and shows a sample gallery: URL and server."""
    home = tmp_path_factory.mktemp("voila")
    source = DASHBOARD_NOTEBOOK.format(rows=GALLERY_ROWS, cols=GALLERY_COLS)
    notebook = {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": "dashboard", "metadata": {}, "execution_count": None, "outputs": [],
                   "source": source}],
    }
    (home / "gallery.ipynb").write_text(json.dumps(notebook))
    with voila(home / "gallery.ipynb", home) as served:
        yield served


def committed_pngs(path: pathlib.Path) -> list[str]:
    """The base64 PNG outputs of a committed notebook, in order."""
    notebook = json.loads(path.read_text())
    return [
        "".join(output["data"]["image/png"]).replace("\n", "")
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
        for output in cell["outputs"]
        if "image/png" in output.get("data", {})
    ]


def title(path: pathlib.Path) -> str:
    """The text of the notebook's first level-1 heading."""
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    raise AssertionError(f"{path} has no level-1 heading")


def test_jupyterlab_refuses_requests_without_the_token(lab):
    url, _ = lab
    assert http_status(f"{url}/api/status") == 403
    assert http_status(f"{url}/api/contents/{INDEX}") == 403
    assert http_status(f"{url}/api/contents/{INDEX}", headers={"Authorization": "token wrong-token"}) == 403
    assert http_status(f"{url}/api/contents/{INDEX}", headers={"Authorization": f"token {TOKEN}"}) == 200


def test_jupyterlab_shows_the_index_with_its_figures_and_a_connected_kernel(page, lab, tmp_path):
    url, server = lab
    pngs = committed_pngs(ROOT / INDEX)
    assert pngs, f"{INDEX} has no committed figure to look for"
    page.get(f"{url}/lab/tree/{INDEX}?token={TOKEN}")

    def wait(condition, what):
        return wait_for(page, condition, PAGE_TIMEOUT, what, server, tmp_path / "jupyterlab.png")

    def loaded_figures(driver):
        # Each figure scrolled into view must have decoded and take up room on the page.
        figures = driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-OutputArea-output img")
        return len(figures) >= len(pngs) and all(driver.execute_script(
            "arguments[0].scrollIntoView({block: 'center'});"
            "const box = arguments[0].getBoundingClientRect();"
            "return arguments[0].complete && arguments[0].naturalWidth > 0 && box.width > 0 && box.height > 0;",
            figure) for figure in figures) and figures

    figures = wait(loaded_figures, f"the {len(pngs)} committed figures of {INDEX}")
    shown = [figure.get_attribute("src") for figure in figures]
    assert shown == [f"data:image/png;base64,{png}" for png in pngs], "the page shows other figures than committed"

    headings = [h.text for h in page.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-RenderedMarkdown h1")]
    assert any(title(ROOT / INDEX) in heading for heading in headings), f"title not shown; level-1 headings: {headings}"

    # The kernel's websocket passes the token check and the kernel answers.
    wait(lambda d: d.find_elements(By.CSS_SELECTOR, '.jp-Notebook-ExecutionIndicator[data-status="idle"]'),
         "the notebook's kernel to be idle")


def test_voila_dashboard_redraws_when_the_slider_moves_in_the_page(page, voila_dashboard, tmp_path):
    url, server = voila_dashboard
    page.get(url)

    def wait(condition, what, timeout=MOVE_TIMEOUT):
        return wait_for(page, condition, timeout, what, server, tmp_path / "voila.png")

    def gallery_image_or_error(driver):
        if PYTHON_ERROR in page_text(driver):  # Voila shows the notebook's traceback: no use waiting
            return PYTHON_ERROR
        images = driver.find_elements(By.CSS_SELECTOR, "img.widget-image")
        return len(images) == 1 and driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", images[0]) and images[0]

    gallery = wait(gallery_image_or_error, "the dashboard's image", DASHBOARD_TIMEOUT)
    assert gallery != PYTHON_ERROR, f"the notebook failed in Voila:\n{page_text(page)}\n{server.log_tail()}"
    # rows x cols digits of 28 pixels, 1-pixel gaps: the picture is the whole gallery.
    size = page.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", gallery)
    assert size == [GALLERY_COLS * 29 - 1, GALLERY_ROWS * 29 - 1]
    readout = page.find_element(By.CSS_SELECTOR, ".widget-readout")
    assert readout.text == "1.00", "the temperature starts at 1"
    before = gallery.get_attribute("src")

    page.find_element(By.CSS_SELECTOR, ".noUi-handle").send_keys(Keys.ARROW_RIGHT)  # one step up
    wait(lambda d: float(readout.text) > 1.0, "the readout to show a higher temperature")
    wait(lambda d: gallery.get_attribute("src") != before, "a new picture after the slider moved")

    moved = gallery.get_attribute("src")
    page.find_element(By.XPATH, "//button[contains(., 'reseed')]").click()
    wait(lambda d: gallery.get_attribute("src") != moved, "a new picture after reseeding")

    text = page_text(page)
    assert "Error while" not in text and PYTHON_ERROR not in text, f"the dashboard shows an error:\n{text}"


def test_voila_dashboards_tour_trains_inside_its_dashboards_and_shows_no_dead_widget(page, tmp_path):
    """The dashboards tour served by Voila on an empty zoo: points train, and no widget error is left in the page."""
    zoo_root = tmp_path / "zoo"
    zoo_root.mkdir()
    home = tmp_path / "voila"
    home.mkdir()
    notebook = json.loads((ROOT / DASHBOARDS).read_text())
    headings = [line for cell in notebook["cells"] if cell["cell_type"] == "markdown"
                for line in "".join(cell["source"]).splitlines() if line.startswith("#")]
    last_heading = headings[-1].lstrip("# ").strip()
    with voila(ROOT / DASHBOARDS, home, VAEKIT_ZOO=str(zoo_root)) as (url, server):
        page.get(url)

        def finished(driver):
            text = page_text(driver)
            if PYTHON_ERROR in text or any(error in text for error in WIDGET_ERRORS):
                return text  # no use waiting
            images = driver.find_elements(By.CSS_SELECTOR, "img.widget-image")
            return last_heading in text and len(images) >= TOUR_IMAGES and all(driver.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth > 0", image) for image in images) and text

        text = wait_for(page, finished, TOUR_TIMEOUT, f"the {TOUR_IMAGES} images of the tour's dashboards", server,
                        tmp_path / "tour.png")
        if PYTHON_ERROR not in text:
            # A widget whose model is gone reads "Loading widget..." until the manager has restored, then an error.
            text = wait_for(page, lambda d: not any(m in page_text(d) for m in (*WIDGET_ERRORS, WIDGET_LOADING))
                            and page_text(d), SETTLE_TIMEOUT, "every widget of the page to be displayed", server,
                            tmp_path / "tour.png")
        page.execute_script("window.scrollTo(0, 0)")
        page.save_screenshot(str(tmp_path / "tour.png"))  # the page as a learner sees it, kept with the test's files
        log = server.log_tail()
    assert PYTHON_ERROR not in text, f"the notebook failed in Voila:\n{text}\n{log}"
    for error in WIDGET_ERRORS:
        assert error not in text, f"the page shows {error!r}:\n{text}"
    assert "Error while" not in text, f"a dashboard shows an error:\n{text}"
    trained = sorted(folder.name for folder in (zoo_root / "mnist").glob("*") if (folder / "point.json").is_file())
    assert len(trained) == 2, f"the tour should have trained its two points into the empty zoo; found {trained}"
