"""The web view in headless Chromium: sign-in, fronts, the subnet panel and its downloads, live progress, isolation.

Every test reads the browser's console at the end: the view must log no error.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains

from tests.cli.test_client import Live
from tests.ui.conftest import add_front, sign_in, wait_for

Screenshot = Callable[[Any, str], Path]


def console_errors(driver: Any) -> list[str]:
    """The console's errors since the last call (the log is read once)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture
def clean_console(browser: Any) -> Iterator[Any]:
    """The browser, checked after the test for errors in the console."""
    console_errors(browser)
    yield browser
    assert console_errors(browser) == []


def test_a_bad_token_says_it_was_not_accepted(browser: Any, live: Live, screenshot: Screenshot) -> None:
    browser.get(f"{live.url}/")
    browser.execute_script("sessionStorage.clear(); location.reload();")
    wait_for(browser, "document.getElementById('token')")
    assert browser.current_url == f"{live.url}/ui/"
    browser.find_element("id", "token").send_keys("not-a-token")
    browser.find_element("css selector", "#signin button[type=submit]").click()
    message = wait_for(browser, "!document.getElementById('signin-error').hidden && "
                                "document.getElementById('signin-error').textContent")  # fmt: skip
    assert "not accepted" in message and "401" in message
    assert browser.execute_script("return sessionStorage.getItem('hwnas.token')") is None
    assert browser.execute_script("return document.cookie") == ""
    screenshot(browser, "signin-bad-token")
    # the only console errors are the browser's note of the refused request
    assert all("401" in m for m in console_errors(browser))


def test_the_front_shows_every_member_and_the_panel_downloads_checked_bytes(
    clean_console: Any, live: Live, screenshot: Screenshot, downloads: Path
) -> None:
    browser = clean_console
    search_id, ids = add_front(live, "a", points=12)
    sign_in(browser, live, "a", f"#/searches/{search_id}")
    wait_for(browser, "document.getElementById('front') && document.getElementById('front').dataset.ready")
    plot = browser.find_element("id", "front")
    assert plot.get_attribute("data-points") == "12" and plot.get_attribute("data-validated") == "6"
    traces = "[...document.querySelectorAll('#front .scatterlayer .trace')]"
    drawn = browser.execute_script(f"return {traces}.map(t => t.querySelectorAll('path.point').length)")
    assert drawn[:2] == [12, 6]  # predicted, validated (then the joining lines, then the dominated marks)
    assert drawn[3] >= 1
    assert len(browser.find_elements("css selector", "#front-table tbody tr")) == 12

    # hover: the point's numbers, every objective predicted and validated
    point = browser.find_elements("css selector", "#front .scatterlayer .trace:first-child path.point")[0]
    ActionChains(browser).move_to_element(point).perform()
    info = wait_for(browser, "document.getElementById('point-info').textContent.includes('subnet #') && "
                             "document.getElementById('point-info').innerText")  # fmt: skip
    assert (
        f"subnet #{ids[0]}" in info
        and "k000" in info
        and "depth 2-3-4-2-3" in info
        and "MACs 1.000e+6 · params 100000" in info
    )
    for objective in ("accuracy", "latency:cpu-a", "latency:cpu-b", "latency:gpu-c"):
        assert f"{objective}: predicted" in info
    screenshot(browser, "search-front-hover")

    # click: the subnet panel with its stages, numbers and downloads
    ActionChains(browser).click(point).perform()
    panel = wait_for(browser, "!document.getElementById('subnet-panel').hidden && "
                              "document.getElementById('subnet-panel').innerText")  # fmt: skip
    assert f"Subnet #{ids[0]}" in panel and "latency:gpu-c" in panel
    stages = browser.execute_script(
        "return [...document.querySelectorAll('#subnet-panel table:first-of-type tbody tr')].map(r => r.innerText)"
    )
    assert [s.split("\t")[:2] for s in stages] == [["1", "2"], ["2", "3"], ["3", "4"], ["4", "2"], ["5", "3"]]
    browser.find_element("css selector", "#subnet-panel button.download[data-format=bundle]").click()
    shown = wait_for(browser, "document.getElementById('download-status').dataset.sha256")
    with httpx.Client(base_url=live.url, headers=live.users.a) as http:
        served = http.get(f"/v1/subnets/{ids[0]}/download", params={"format": "bundle"})
    saved = saved_file(downloads, f"subnet-{ids[0]}.zip")
    assert hashlib.sha256(saved).hexdigest() == served.headers["X-Content-SHA256"] == shown
    screenshot(browser, "search-subnet-panel")

    # the table sorts by a column, both ways
    browser.find_element("xpath", "//table[@id='front-table']//button[text()='accuracy predicted']").click()
    first = browser.find_element("css selector", "#front-table tbody tr").get_attribute("data-subnet")
    browser.find_element("xpath", "//table[@id='front-table']//button[text()='accuracy predicted']").click()
    last = browser.find_element("css selector", "#front-table tbody tr").get_attribute("data-subnet")
    assert (int(first), int(last)) == (ids[0], ids[-1])


def saved_file(folder: Path, name: str, timeout_s: float = 10.0) -> bytes:
    """The bytes of the file the browser saved as `name` in `folder`, once it is complete."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (folder / name).exists() and not (folder / f"{name}.crdownload").exists():
            return (folder / name).read_bytes()
        time.sleep(0.05)
    raise AssertionError(f"the browser saved no {name} in {folder}")
