"""The web console in headless Chromium (Debian's, driven by Playwright) against the service as
processes (uvicorn and a Celery worker, the embedded default): sign in with a key, upload a model
and a dataset, delete the dataset, cancel a queued job, submit a recipe job built from the
capabilities form and watch it reach ``succeeded`` over its event stream, read the report framed
in the page, download the artifact and check its bytes, delete a job; at 1280 and 800 pixels
wide. Screenshots go to ``$SHRINK_SCREENSHOT_DIR`` (or the test's temporary folder). And goal
mode, shown from the goal schema the capabilities may carry and absent without one."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page, Route, expect, sync_playwright

from bench.stack import ServiceStack, free_port
from core.db import session_scope
from core.models import StoredModel
from core.tenants import service as tenants
from tests.client.conftest import tiny_onnx

BENCHMARK = {"Batch Sizes": "1", "Warmup Runs": "2", "Min Runs": "5", "Max Runs": "30", "Time Budget Seconds": "2", "Fidelity Rows": "8"}


def _no_sideways_scroll(page: Page) -> bool:
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))


def test_the_console_drives_the_whole_road(embedded_stack: ServiceStack, tmp_path: Path) -> None:
    stack = embedded_stack
    # No worker until the cancel below: a queued job is canceled at once, whatever the timing.
    stack.kill_worker(stack.workers[0])
    key = stack.admin("create-key", stack.admin("create-tenant", "console-team"))
    api = httpx.Client(base_url=stack.base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    model_file = tiny_onnx(tmp_path / "tiny.onnx")
    np.savez(tmp_path / "rows.npz", x=np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32))
    shots = Path(os.environ.get("SHRINK_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium") or "/usr/bin/chromium"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page.set_default_timeout(20000)
            page.on("dialog", lambda dialog: dialog.accept())  # the confirmations before a delete
            failures: list[str] = []
            page.on("pageerror", lambda error: failures.append(str(error)))
            # A 401 before signing in is logged by Chromium as a failed resource: not a failure.
            page.on("console", lambda message: failures.append(message.text)
                    if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))

            page.goto(f"{stack.base}/")
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#who")).to_contain_text("console-team")
            # The key is kept nowhere a script could read it: the session is an HttpOnly cookie.
            assert page.evaluate("() => localStorage.length + sessionStorage.length + document.cookie.length") == 0
            assert page.get_by_label("API key").input_value() == ""

            # Uploads, with their progress bars; a dataset deleted from its list.
            page.get_by_label("Model file").set_input_files(str(model_file))
            page.get_by_label("Model name").fill("tiny")
            page.get_by_role("button", name="Upload model").click()
            expect(page.locator("#models-list li", has_text="tiny")).to_be_visible()
            model_id = api.get("/v1/models").json()["items"][0]["id"]
            page.get_by_label("Dataset file").set_input_files(str(tmp_path / "rows.npz"))
            page.get_by_role("button", name="Upload dataset").click()
            expect(page.locator("#datasets-list li", has_text="8 rows")).to_be_visible()
            dataset_id = api.get("/v1/datasets").json()["items"][0]["id"]
            page.get_by_role("button", name=re.compile(f"Delete dataset .*{dataset_id}")).click()
            expect(page.locator("#datasets-list")).to_contain_text("No datasets yet.")
            assert api.get(f"/v1/datasets/{dataset_id}").status_code == 404

            # Goal mode only where the capabilities describe a goal.
            has_goal = bool((api.get("/v1/capabilities").json().get("goal") or {}).get("properties"))
            expect(page.locator("#mode-goal")).to_have_count(1 if has_goal else 0)

            # A job built from the form, queued with no worker, then canceled from its page.
            page.get_by_label("Model", exact=True).select_option(model_id)
            page.get_by_label("Step 1 operation").select_option("quantize")
            page.get_by_label("Step 1 method").select_option("fp16")
            page.get_by_role("button", name="Submit job").click()
            expect(page.locator("#job-state")).to_have_text("queued")
            canceled_id = page.locator("#job-detail-title").inner_text().split()[1]
            assert api.get(f"/v1/jobs/{canceled_id}").json()["spec"]["recipe"] == [{"op": "quantize", "method": "fp16"}]
            page.locator("#job-detail").get_by_role("button", name="Cancel job").click()
            expect(page.locator("#job-state")).to_have_text("canceled")
            assert api.get(f"/v1/jobs/{canceled_id}").json()["state"] == "canceled"

            # The same recipe with quick benchmark settings, watched live to its end.
            stack.start_worker()
            page.locator("summary", has_text="Benchmark settings").click()
            for label, value in BENCHMARK.items():
                page.get_by_label(label, exact=True).fill(value)
            page.get_by_label("Measure Memory", exact=True).uncheck()
            page.get_by_role("button", name="Submit job").click()
            expect(page.locator("#job-detail-title")).not_to_contain_text(canceled_id)
            job_id = page.locator("#job-detail-title").inner_text().split()[1]
            spec = api.get(f"/v1/jobs/{job_id}").json()["spec"]
            assert spec["benchmark"]["batch_sizes"] == [1] and spec["benchmark"]["measure_memory"] is False
            expect(page.locator("#job-state")).to_have_text("succeeded", timeout=45000)
            # Only the event stream tells the page: it fetched the job when it opened it and
            # again after the stream's end, never by polling.
            assert any(url.endswith(f"/v1/jobs/{job_id}/events") for url in requests)
            assert sum(url.endswith(f"/v1/jobs/{job_id}") for url in requests) <= 3
            expect(page.locator("#job-progress")).to_have_attribute("value", "1")
            expect(page.locator(f'#jobs-list li[data-id="{job_id}"] .state')).to_have_text("succeeded")

            # The report, framed in the page by the session cookie; only this origin may frame it.
            framed = api.get(f"/v1/jobs/{job_id}/report", params={"format": "html"})
            assert framed.headers["content-security-policy"] == "frame-ancestors 'self'"
            page.get_by_role("button", name="Show report").click()
            report = page.frame_locator("#report-frame")
            expect(report.locator("body")).to_contain_text(job_id)
            # Every control has an accessible name: a label, an aria-label or its own text.
            unnamed = page.evaluate("""() => [...document.querySelectorAll("input, select, textarea, button")]
                .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.textContent.trim())
                .map((el) => el.outerHTML.slice(0, 160))""")
            assert not unnamed, unnamed
            assert page.locator("input, select, textarea, button").count() > 30  # the form's fields included
            page.screenshot(path=str(shots / "console-1280.png"), full_page=True)
            assert _no_sideways_scroll(page)

            # The artifact, downloaded by the browser: the stored bytes.
            artifact = next(a for a in api.get(f"/v1/jobs/{job_id}/artifacts").json()["items"] if a["kind"] == "model")
            with page.expect_download() as download:
                page.get_by_role("link", name=f"Download model {artifact['filename']}").click()
            data = Path(download.value.path()).read_bytes()
            assert len(data) == artifact["size_bytes"] and hashlib.sha256(data).hexdigest() == artifact["sha256"]
            assert data == api.get(artifact["links"]["download"]).content

            # A job deleted from the list.
            page.get_by_role("button", name=f"Delete job {canceled_id}").click()
            expect(page.locator(f'#jobs-list li[data-id="{canceled_id}"]')).to_have_count(0)
            assert api.get(f"/v1/jobs/{canceled_id}").status_code == 404

            # Narrow: one column, nothing wider than the window.
            page.set_viewport_size({"width": 800, "height": 900})
            page.screenshot(path=str(shots / "console-800.png"), full_page=True)
            assert _no_sideways_scroll(page)

            # Signing out ends the session for this browser.
            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_label("API key")).to_be_visible()
            assert page.evaluate("async () => (await fetch('/v1/jobs')).status") == 401
            assert not failures, failures
        finally:
            browser.close()


@pytest.fixture
def served(db_env: dict[str, str]) -> Iterator[str]:
    """The app in this process over real HTTP, on SQLite: no worker (nothing here runs a job)."""
    import uvicorn

    from api.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("db_env", ["sqlite"], indirect=True)
def test_goal_mode_follows_the_capabilities_goal_schema(served: str) -> None:
    with session_scope() as session:
        tenant = tenants.create_tenant(session, "goals")
        _, key = tenants.create_api_key(session, tenant.id)
        session.add(StoredModel(id="mdl_goal", tenant_id=tenant.id, name="g", format="onnx", size_bytes=1,
                                sha256="0" * 64, storage_key="k", info={}))
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15000)

            page.goto(f"{served}/")
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_label("a goal").check()
            expect(page.locator("#recipe-part")).to_be_hidden()
            page.get_by_label("Max Drop", exact=True).fill("0.02")
            page.get_by_label("Objective", exact=True).select_option(label="size")
            with page.expect_response(lambda r: r.url.endswith("/v1/jobs") and r.request.method == "POST") as answered:
                page.get_by_role("button", name="Submit job").click()
            # Only what the user changed; the service fills in the rest, and queues the search.
            assert answered.value.request.post_data_json == {"model_id": "mdl_goal", "goal": {"max_drop": 0.02, "objective": "size"}}
            assert answered.value.status == 202

            def without_goal(route: Route) -> None:
                answer = route.fetch()
                route.fulfill(response=answer, json={k: v for k, v in answer.json().items() if k != "goal"})

            # Capabilities without a goal schema (an older service): no goal mode.
            page.route("**/v1/capabilities", without_goal)
            page.reload()
            expect(page.locator("#recipe-part")).to_be_visible()
            expect(page.locator("#mode-goal")).to_have_count(0)
        finally:
            browser.close()
