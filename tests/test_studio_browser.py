"""The studio in a real browser: headless Chromium (Debian's package) driven by Selenium.

Records a demonstration through the tool forms, reviews alice's replica and saves a rating with
a critique (holding a script tag) and a rewrite, revokes serve consent; then `replica data
validate` accepts the files, `replica data prepare` counts the new demonstration and preference
pair, and the server answers 403 for the revoked replica. Each page is saved as a screenshot
(to REPLICA_STUDIO_SCREENSHOTS when set, e.g. docs/studio, else to the test's temporary folder).

Selenium is pointed at /usr/bin/chromium and /usr/bin/chromedriver and told to stay offline, so
Selenium Manager never downloads a browser or a driver. `scripts/setup_env.sh` installs both
with apt-get when it runs as root; without them this test is skipped with the reason.
"""
# ruff: noqa: F811  (pytest fixtures imported from the fixture modules)

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from studio_fixtures import studio_run  # noqa: F401

from replica.agents.keys import create_key
from replica.agents.serve_config import ServeConfig
from replica.agents.server import build_state, create_app
from replica.cli import main
from replica.studio.app import create_app as create_studio
from replica.studio.auth import create_token
from replica.studio.review import Runner
from replica.studio.site import load_site

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CRITIQUE = "Wrong: it never refunded. <script>alert('owned')</script>"
REWRITE = "I refunded the $30 for your lamp to your card."


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return f"{path} not found: install Debian's chromium and chromium-driver (scripts/setup_env.sh does, as root)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


def _loads_page(browser, action) -> None:
    """Do `action` (a click or an Enter that submits or follows a link) and wait until the old
    page is gone, so that the next lookup cannot find an element of the page being left."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    action()
    WebDriverWait(browser, 30).until(lambda _: _left_document(old))


def _left_document(element) -> bool:
    """Whether `element` is no longer in the page. Caught mid-navigation, Chrome answers "Node with
    given id does not belong to the document" (a plain WebDriverException, seen in CI) instead of
    a stale-element error: both mean the old page is gone."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return True
        raise
    return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def studio_url(studio_run):
    """The studio served by uvicorn on a free local port, in a thread."""
    import uvicorn

    site = load_site(studio_run)
    app = create_studio(site, Runner(site, device="cpu", max_turns=2, max_new_tokens=24))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", site
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never download anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def shoot(driver, folder: Path, name: str) -> None:
    """A screenshot of the whole page, not only the window (Chrome DevTools' captureBeyondViewport)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 4000), "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    (folder / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def test_round_trip_in_a_real_browser(studio_url, browser, studio_run, tmp_path, capsys):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    url, site = studio_url
    shots = Path(os.environ.get("REPLICA_STUDIO_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    state = build_state(studio_run, ServeConfig(batch_wait_ms=0), device="cpu")
    server = TestClient(create_app(state))
    ask = {"model": "alice", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
    for consumer, requests in (("globex", 2), ("acme", 1)):  # metered requests to earn from
        key = create_key(studio_run / "serve" / "keys.sqlite", consumer)
        server.headers["Authorization"] = f"Bearer {key}"
        for _ in range(requests):
            assert server.post("/v1/chat/completions", json=ask).status_code == 200
    find = browser.find_element

    # ---- sign in, with the keyboard
    browser.get(url + "/")
    shoot(browser, shots, "signin")
    token = create_token(site, "alice")
    _loads_page(browser, lambda: find(By.ID, "token").send_keys(token, Keys.ENTER))
    assert "Welcome, alice" in find(By.TAG_NAME, "h1").text
    shoot(browser, shots, "home")

    # ---- record: one of alice's tasks, two tool calls through the schema-made forms, the reply
    _loads_page(browser, find(By.LINK_TEXT, "Record").click)
    Select(find(By.ID, "task_id")).select_by_value("alice-refund")
    _loads_page(browser, find(By.CSS_SELECTOR, "#start-task button").click)
    _loads_page(browser, lambda: find(By.ID, "get_order-order_id").send_keys("O-7", Keys.ENTER))
    find(By.ID, "issue_refund-order_id").send_keys("O-7")
    find(By.ID, "issue_refund-amount").send_keys("30")
    _loads_page(browser, find(By.CSS_SELECTOR, "#tool-issue_refund button").click)
    assert '"refunded": 30' in find(By.ID, "steps").text  # the sandbox ran the call
    find(By.ID, "reply").send_keys("Your $30 refund for the lamp is on its way.")
    shoot(browser, shots, "record")
    _loads_page(browser, find(By.CSS_SELECTOR, "#save button").click)
    assert "Saved demonstration" in find(By.CSS_SELECTOR, "p.ok").text

    # ---- review: alice's replica runs the task; rate 2 with a critique and rewrite the reply
    _loads_page(browser, find(By.LINK_TEXT, "Review").click)
    _loads_page(browser, find(By.CSS_SELECTOR, "#run-review button").click)
    assert "What the replica did" in find(By.TAG_NAME, "main").text
    find(By.ID, "score-2").send_keys(Keys.SPACE)  # radios by keyboard
    find(By.ID, "critique").send_keys(CRITIQUE)
    find(By.ID, "rewrite").clear()
    find(By.ID, "rewrite").send_keys(REWRITE)
    shoot(browser, shots, "review")
    _loads_page(browser, find(By.CSS_SELECTOR, "#judge button").click)
    assert "Saved feedback" in find(By.ID, "saved").text
    assert CRITIQUE in find(By.ID, "feedback").text  # shown as text ...
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text  # ... and never run

    # ---- consent: serve -> not allowed
    _loads_page(browser, find(By.LINK_TEXT, "Consent").click)
    find(By.ID, "serve-not_allowed").click()
    _loads_page(browser, find(By.CSS_SELECTOR, "#scopes button").click)
    assert "Consent saved" in find(By.ID, "changed").text
    shoot(browser, shots, "consent")

    # ---- earnings: the request served before the revocation
    _loads_page(browser, find(By.LINK_TEXT, "Earnings").click)
    assert "acme" in find(By.TAG_NAME, "main").text and "globex" in find(By.TAG_NAME, "main").text
    assert browser.execute_script("return document.querySelector('main img').naturalWidth") > 0
    shoot(browser, shots, "earnings")

    # ---- the files the studio wrote, read by the pipeline
    refused = server.post("/v1/chat/completions", json=ask)
    assert refused.status_code == 403 and "serve consent" in refused.json()["error"]["message"]
    main(["data", "validate", site.config.data.contributors_file, str(site.data_file("alice"))])
    capsys.readouterr()
    main(["data", "prepare", str(site.config_path)])
    manifest = json.loads((studio_run / "prepared" / "manifest.json").read_text())
    alice = manifest["counts"]["per_contributor"]["alice"]
    assert alice["demonstration"]["accepted"] == 1
    assert (alice["rating"]["accepted"], alice["rewrite"]["accepted"]) == (1, 1)
    assert manifest["contributors"]["alice"]["pairs"]["rewrite"] == 1
    assert server.post("/v1/chat/completions", json=ask).status_code == 403  # prepare kept the revocation
    state.close()
