"""The web view's browser tests: a live service, headless Chromium from the system packages, and fronts to show.

The browser is Debian's ``chromium`` driven through its ``chromium-driver`` (``.ci/run`` installs both);
nothing is downloaded. Without them the tests skip, saying so. Screenshots go to ``tests-output/ui/``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from store.artifacts import register_artifact
from store.models import Subnet, Supernet
from tests.api.conftest import ctx  # noqa: F401  (the API tests' service context, for the `client` fixture)
from tests.cli.test_client import SPACE, Live, bundle, live_server

CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "tests-output" / "ui"
TARGETS = ("cpu-a", "cpu-b", "gpu-c")


def chromium() -> str | None:
    """The system's Chromium binary, if installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def new_browser(downloads: Path) -> Any:
    """Headless Chromium through the system chromedriver, saving downloads to `downloads`, logging the console."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium() or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000",
                "--disable-extensions", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="session")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the browser saves downloads."""
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="session")
def browser(downloads: Path) -> Iterator[Any]:
    """One headless Chromium for the whole session (starting one costs about a second)."""
    if chromium() is None or not CHROMEDRIVER.exists():
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver; .ci/run does)")
    driver = new_browser(downloads)
    driver.set_script_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[Live]:
    """The service on loopback for the module's tests, with users alice (a) and bob (b)."""
    with live_server(tmp_path_factory.mktemp("home")) as served:
        yield served
        # leave the module's pages before their server stops: their polls would log refused connections
        browser.get("about:blank")


@pytest.fixture(scope="session")
def screenshot() -> Callable[[Any, str], Path]:
    """Save the browser's page as ``tests-output/ui/<name>.png`` (a folder git ignores, as its .gitignore says)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS.parent / ".gitignore").write_text("# written by tests/ui\n*\n")

    def save(driver: Any, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        driver.save_screenshot(str(path))
        return path

    return save


def add_front(live: Live, who: str, points: int, *, targets: tuple[str, ...] = TARGETS) -> tuple[int, list[int]]:
    """A supernet of user `who`, a search on `targets` through the API, and `points` front members written as rows.

    Member i has accuracy and one latency per target (validated too for every other member); the
    first has a bundle; members 3, 13, ... are beaten by their neighbour after validation.
    """
    import httpx

    user_id = getattr(live.users, f"{who}_id")
    headers = getattr(live.users, who)
    with httpx.Client(base_url=live.url, headers=headers) as http:
        for name in targets:
            http.post("/v1/targets", json={"name": name, "device": "cpu", "remote": True})
        with live.ctx.db.session() as s:
            supernet = Supernet(user_id=user_id, space=SPACE, dataset="demo", strategy="sandwich",
                                config={"space": SPACE}, name="demo")  # fmt: skip
            s.add(supernet)
            s.flush()
            supernet_id = supernet.id
        goal = {"supernet_id": supernet_id, "objectives": ["accuracy", *(f"latency:{t}" for t in targets)],
                "targets": list(targets), "budget": 100}  # fmt: skip
        answer = http.post("/v1/searches", json=goal)
        assert answer.status_code == 202, answer.text
        search_id = int(answer.json()["id"])
    ids = []
    with live.ctx.db.session() as s:
        for i in range(points):
            t = i / max(points - 1, 1)
            predicted = {"accuracy": 0.6 + 0.3 * t, "macs": 1e6 * (1 + 9 * t), "params": 1e5 * (1 + 4 * t)}
            predicted.update({f"latency:{name}": (j + 1) * (1 + 4 * t) + 0.1 * ((i * 7 + j) % 5)
                              for j, name in enumerate(targets)})  # fmt: skip
            validated = None
            if i % 2 == 0:
                validated = {
                    k: v * (0.98 if k == "accuracy" else 1.05)
                    for k, v in predicted.items()
                    if k not in ("macs", "params")
                }
                if i % 10 == 2:  # validated worse than a cheaper neighbour: a dominated member
                    validated["accuracy"] = 0.5
            row = Subnet(user_id=user_id, supernet_id=supernet_id, search_id=search_id, arch_key=f"k{i:03d}",
                         arch={"ks": [3, 5, 7, 3] * 5, "e": [3, 4, 6, 3] * 5, "d": [2, 3, 4, 2, 3], "r": 32},
                         predicted=predicted, validated=validated, pareto_rank=0)  # fmt: skip
            if i == 0:
                stored = live.ctx.store.put(f"bundles/s{search_id}.zip", bundle())
                row.bundle_artifact_id = register_artifact(s, stored, kind="bundle").id
            s.add(row)
            s.flush()
            ids.append(row.id)
    return search_id, ids


def wait_for(driver: Any, script: str, timeout_s: float = 10.0) -> Any:
    """Run `script` (a JS expression) until it is truthy; its value, or a failure naming it after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {script!r} (page: {driver.current_url})")
        time.sleep(0.05)


def sign_in(driver: Any, live: Live, who: str = "a", page: str = "#/searches") -> None:
    """Open the view in a fresh tab state and sign in with `who`'s token through the form."""
    driver.get(f"{live.url}/ui/?poll_ms=300{page}")
    driver.execute_script("sessionStorage.clear(); location.reload();")
    wait_for(driver, "document.getElementById('token')")
    driver.find_element("id", "token").send_keys(live.token(who))
    driver.find_element("css selector", "#signin button[type=submit]").click()
    wait_for(driver, "!document.getElementById('nav').hidden")
