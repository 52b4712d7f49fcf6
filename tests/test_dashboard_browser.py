"""The dashboard in a real headless browser (Debian's chromium and chromium-driver, through Selenium): what an
administrator sees and clicks. One `transport run` and one browser session serve the whole module.

Outside CI the module is skipped, saying why, when chromium or its driver is missing; under CI (`CI` set) their
absence fails, because `.ci/run` installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from hubtools import REPO, HubProcess, free_port, make_message, run_cli, send_sync, tracking, wait_file, write_config

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "browser-test-token"

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # the test extra is not installed
    webdriver = None

_MISSING = ("selenium is not installed (pip install -e '.[test]')" if webdriver is None
            else "chromium is not installed (apt-get install chromium chromium-driver)" if CHROMIUM is None
            else f"{CHROMEDRIVER} is missing (apt-get install chromium-driver)" if not CHROMEDRIVER.exists() else "")
if _MISSING and not os.environ.get("CI"):
    pytest.skip(f"browser tests skipped: {_MISSING}", allow_module_level=True)


def _shipped(key: str) -> Any:
    return yaml.safe_load((REPO / "transport.yaml").read_text(encoding="utf-8"))[key]


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Iterator[tuple[str, int, Path]]:
    """`transport run` with the shipped agents and demo zones, its dashboard on a free port: (url, SMTP port, config)."""
    if _MISSING:
        pytest.fail(f"CI must run the browser tests: {_MISSING} (.ci/run installs chromium and chromium-driver)")
    tmp = tmp_path_factory.mktemp("dashboard")
    smtp, web = free_port(), free_port()
    config = write_config(tmp, {
        "receive": {"bindings": [f"127.0.0.1:{smtp}"], "tarpit_interval": 0},
        "dns": {"zone_files": [str(REPO / "examples" / "zones" / "demo.zone")], "use_network": False},
        "agents": _shipped("agents"),
        "dashboard": {"enabled": True, "binding": f"127.0.0.1:{web}", "token": TOKEN, "refresh_interval": 0.5},
    })
    process = HubProcess(config).start()
    try:
        yield f"http://127.0.0.1:{web}", smtp, config
    finally:
        process.signal(signal.SIGTERM)
        process.wait()
        process.stop()


@pytest.fixture(scope="module")
def browser(hub) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)  # the system's driver: no downloads
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: Any, condition: Callable[[Any], Any], timeout: float = 10) -> Any:
    """Wait for the page to show something; a live region refreshed under us is looked up again."""
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def queue_row(driver: Any, queue: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f'#queues tr[data-queue="{queue}"]')


def click(driver: Any, css: str) -> None:
    until(driver, lambda d: d.find_element(By.CSS_SELECTOR, css).click() or True)


def queue_status(config: Path, queue: str) -> str:
    listed = json.loads(run_cli("queue", "list", "--json", "-c", str(config)).stdout)
    return next(q["status"] for q in listed if q["identity"].endswith("\\" + queue))


def test_the_queues_page_lists_submission_and_the_mailbox_queue(hub, browser):
    url, _, _ = hub
    browser.get(url + "/queues")
    identities = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#queues tbody tr td:first-child")]
    assert identities == ["hub.contoso.com\\Submission", "hub.contoso.com\\mailbox"]
    assert "SmtpDeliveryToMailbox" in queue_row(browser, "mailbox").text


def test_suspending_a_queue_from_the_page_shows_in_queue_list(hub, browser):
    url, _, config = hub
    browser.get(url + "/queues")
    box = browser.find_element(By.ID, "token")
    box.clear()
    box.send_keys(TOKEN)
    click(browser, '#queues tr[data-queue="mailbox"] button[value="suspend"]')
    assert until(browser, lambda d: "hub.contoso.com\\mailbox: Suspended" in d.find_element(By.ID, "done").text)
    assert queue_status(config, "mailbox") == "Suspended"
    # the page refreshes itself: resumed from the command line, the row says so without a reload
    assert run_cli("queue", "resume", "mailbox", "-c", str(config)).returncode == 0
    until(browser, lambda d: "Ready" in queue_row(d, "mailbox").text)


def test_an_action_without_the_token_is_refused(hub, browser):
    url, _, config = hub
    browser.get(url + "/queues")
    browser.find_element(By.ID, "token").clear()
    browser.execute_script("sessionStorage.clear()")
    click(browser, '#queues tr[data-queue="mailbox"] button[value="suspend"]')
    assert until(browser, lambda d: "403 Forbidden" in d.find_element(By.TAG_NAME, "body").text)
    assert queue_status(config, "mailbox") == "Ready"


def test_a_message_sent_over_smtp_appears_in_track_with_its_deliver_row(hub, browser):
    url, smtp, config = hub
    send_sync(smtp, "john@fabrikam.com", ["alice@contoso.com"],
              make_message(subject="Seen in the browser", message_id="<browser-1@fabrikam.com>",
                           sender="john@fabrikam.com"))
    root = Path(yaml.safe_load(config.read_text())["data_root"])
    wait_file(lambda: any(r["event-id"] == "DELIVER" and r["message-id"] == "<browser-1@fabrikam.com>"
                          for r in tracking(root)))
    browser.get(url + "/track")
    browser.find_element(By.NAME, "subject").send_keys("Seen in the browser")
    browser.find_element(By.CSS_SELECTOR, "#track-form button").click()
    rows = until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#results tbody tr"))
    assert [r.find_element(By.CSS_SELECTOR, "td.event").text for r in rows] == ["RECEIVE", "AGENTINFO", "SUBMIT", "DELIVER"]
    rows[-1].find_element(By.LINK_TEXT, "<browser-1@fabrikam.com>").click()
    timeline = until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline li"))
    deliver = timeline[-1]
    assert "DELIVER" in deliver.text and "250 2.0.0 Delivered" in deliver.text
    deliver.find_element(By.TAG_NAME, "summary").click()
    assert "STOREDRIVER" in deliver.find_element(By.CSS_SELECTOR, "table.fields").text


def test_a_trace_of_the_spoofed_example_shows_its_scl_and_disposition(hub, browser):
    url, _, _ = hub
    browser.get(url + "/trace")
    ip = browser.find_element(By.NAME, "client_ip")
    ip.clear()
    ip.send_keys("203.0.113.7")
    browser.find_element(By.NAME, "file").send_keys(str(REPO / "examples" / "eml" / "spoof-contoso.eml"))
    browser.find_element(By.CSS_SELECTOR, "#trace-form button").click()
    verdict = until(browser, lambda d: d.find_element(By.ID, "verdict"))
    assert browser.find_element(By.ID, "scl").text == "7"
    assert "alice@contoso.com: Rejected 550 5.7.1 Message rejected due to content restrictions" in verdict.text
    rules = browser.find_element(By.ID, "rules").text
    assert "sender_id_fail" in rules and "reply_to_mismatch" in rules and "all_caps_subject" in rules
    assert "Content Filter Agent" in browser.find_element(By.ID, "steps").text
    assert "contoso.com" in browser.find_element(By.ID, "dns").text
