"""The web view while jobs run (progress and curves change without a reload); jobs, targets, isolation."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from store.models import LatencyTable, Supernet, Target
from tests.api_helpers import tiny_onnx
from tests.cli.test_client import SPACE, Live
from tests.ui.conftest import add_front, sign_in, wait_for
from tests.ui.test_browser import console_errors

Screenshot = Callable[[Any, str], Path]


def text_of(element_id: str, wanted: str) -> str:
    """A JS expression: the element's text when it contains `wanted`."""
    element = f"document.getElementById('{element_id}')"
    return f"{element} && {element}.innerText.includes('{wanted}')"


def test_progress_and_training_curves_change_on_screen_without_a_reload(
    browser: Any, live: Live, screenshot: Screenshot
) -> None:
    console_errors(browser)
    queue = live.ctx.queue
    search_id, _ = add_front(live, "a", points=5)
    lease = queue.claim("ui-test", 60, kinds=["search"])
    assert lease is not None
    queue.progress(lease, {"stage": "search", "evaluations": 10, "budget": 100})
    sign_in(browser, live, "a", f"#/jobs/{lease.job_id}")
    wait_for(browser, text_of("job-progress", "10/100 evaluations"))
    browser.execute_script("window.sameDocument = true")
    queue.progress(lease, {"stage": "search", "evaluations": 60, "budget": 100})
    queue.log(lease, "halfway")
    wait_for(browser, text_of("job-progress", "60/100 evaluations") + " && " + text_of("events", "halfway"))
    assert "null" not in browser.find_element("id", "main").text
    screenshot(browser, "job-live")

    browser.execute_script("location.hash = '#/searches'")
    wait_for(browser, text_of("searches", "60/100"))
    queue.progress(lease, {"stage": "search", "evaluations": 80, "budget": 100})
    wait_for(browser, text_of("searches", "80/100"))
    assert f"#{search_id}" in browser.find_element("id", "searches").text
    screenshot(browser, "searches-live")

    # a training job: its curves grow epoch by epoch from the event stream
    job, _ = queue.submit("train_supernet", {"name": "demo", "config": {"space": SPACE, "dataset": "demo"}},
                          user_id=live.users.a_id)  # fmt: skip
    training = queue.claim("ui-test", 60, kinds=["train_supernet"])
    assert training is not None and training.job_id == job.id

    def epoch(i: int) -> None:
        queue.progress(training, {"phase": "full", "phase_index": 0, "phases": 1, "epoch": i, "epochs": 4, "step": 9,
                                  "steps": 10, "loss": 2.0 / (i + 1), "val_acc_largest": 0.5 + i / 10,
                                  "val_acc_smallest": 0.4 + i / 10})  # fmt: skip

    epoch(0)
    epoch(1)
    browser.execute_script(f"location.hash = '#/jobs/{job.id}'")
    wait_for(browser, "document.getElementById('curves') && document.getElementById('curves').dataset.epochs === '2'")
    epoch(2)
    wait_for(browser, "document.getElementById('curves').dataset.epochs === '3'")
    screenshot(browser, "training-curves")
    browser.execute_script("location.hash = '#/supernets'")
    wait_for(browser, text_of("training", f"job #{job.id}"))
    screenshot(browser, "supernets")
    with live.ctx.db.session() as s:
        supernet = Supernet(user_id=live.users.a_id, job_id=job.id, space=SPACE, dataset="demo", name="trained",
                            strategy="sandwich", config={"space": SPACE}, metrics={"epochs": 3})  # fmt: skip
        s.add(supernet)
        s.flush()
        supernet_id = supernet.id
    browser.execute_script(f"location.hash = '#/supernets/{supernet_id}'")
    wait_for(browser, "document.getElementById('curves') && document.getElementById('curves').dataset.epochs === '3'")
    screenshot(browser, "supernet")
    assert browser.execute_script("return window.sameDocument") is True
    for held in (lease, training):  # ended jobs end their event streams, so the server stops at once
        queue.fail(held, "stopped", "the test is over")
    assert console_errors(browser) == []


def test_jobs_show_errors_as_the_api_gives_them_and_targets_show_agents_tasks_and_model_quality(
    browser: Any, live: Live, screenshot: Screenshot
) -> None:
    console_errors(browser)
    queue = live.ctx.queue
    job, _ = queue.submit("export_subnet", {"subnet_id": 7}, user_id=live.users.a_id)
    lease = queue.claim("ui-test", 60, kinds=["export_subnet"])
    assert lease is not None
    queue.fail(lease, "not_found", "subnet 7 not found")
    with httpx.Client(base_url=live.url, headers=live.users.a) as http:
        assert http.post("/v1/targets", json={"name": "rpi4-ort", "device": "arm", "threads": 4}).status_code == 201
        environment = {"cpu_model": "Cortex-A72", "threads": 4, "os": "Linux"}
        answer = http.post("/v1/agents", json={"name": "rpi-lab", "targets": ["rpi4-ort"], "environment": environment})
        assert answer.status_code == 201, answer.text
        model = base64.b64encode(tiny_onnx()).decode()
        task = http.post("/v1/targets/rpi4-ort/tasks", json={"model_base64": model, "settings": {"runs": 7}})
        assert task.status_code == 201, task.text
    with live.ctx.db.session() as s:
        target = s.scalars(select(Target).where(Target.name == "rpi4-ort")).one()
        quality = {"n": 3, "mape": 4.0, "predicted": [1.0, 2.1, 2.9], "measured": [1.1, 2.0, 3.0]}
        s.add(LatencyTable(target_id=target.id, space=SPACE, kind="lut", quality=quality))
    sign_in(browser, live, "a", "#/jobs?kind=export_subnet")
    wait_for(browser, text_of("jobs", "not_found: subnet 7 not found"))
    screenshot(browser, "jobs")
    browser.execute_script(f"location.hash = '#/jobs/{job.id}'")
    wait_for(browser, text_of("job-error", "not_found: subnet 7 not found"))
    browser.execute_script("location.hash = '#/targets'")
    wait_for(browser, text_of("targets", "rpi4-ort"))
    screenshot(browser, "targets")
    browser.execute_script("location.hash = '#/targets/rpi4-ort'")
    wait_for(browser, text_of("agents", "rpi-lab") + " && " + text_of("main", "Cortex-A72"))
    assert "online" in browser.find_element("id", "agents").text
    pending = browser.find_element("id", "tasks").text
    assert f"#{task.json()['id']}" in pending and "QUEUED" in pending and "7" in pending
    wait_for(browser, "document.querySelectorAll('#quality-plot .point').length === 3")  # measured vs predicted
    screenshot(browser, "target")
    assert console_errors(browser) == []


def test_a_second_user_sees_none_of_the_first_users_searches(browser: Any, live: Live, screenshot: Screenshot) -> None:
    search_id, _ = add_front(live, "a", points=2, targets=("cpu-a",))
    console_errors(browser)
    sign_in(browser, live, "b", "#/searches")
    wait_for(browser, text_of("searches", "No searches yet"))
    browser.execute_script("location.hash = '#/jobs'")
    wait_for(browser, text_of("jobs", "No jobs."))
    browser.execute_script(f"location.hash = '#/searches/{search_id}'")
    message = wait_for(browser, "document.getElementById('error') && document.getElementById('error').innerText")
    assert message.startswith("404 not_found")
    screenshot(browser, "other-user")
    assert all(" 404 " in m for m in console_errors(browser))  # the browser's note of the refused request
