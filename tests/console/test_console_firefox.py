"""The web console in Firefox: Debian's firefox-esr, driven over WebDriver BiDi by puppeteer-core
(tests/console/firefox/flow.mjs; Playwright's Firefox needs its own patched build, which is
downloaded from outside the package registries), against the service as processes. `make test`
installs firefox-esr and the script's locked packages. The script signs in, uploads, submits a
recipe job from the form, watches it to ``succeeded``, reads the framed report, fetches the
artifact through its link and signs out; this test checks what it saw against the API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np

from bench.stack import ServiceStack
from tests.client.conftest import tiny_onnx

SCRIPT_DIR = Path(__file__).resolve().parent / "firefox"


def test_the_console_drives_the_whole_road_in_firefox(embedded_stack: ServiceStack, tmp_path: Path) -> None:
    firefox = shutil.which("firefox-esr") or shutil.which("firefox")
    node = shutil.which("node")
    assert firefox and node, "Firefox and Node are needed for this test: make firefox"
    assert (SCRIPT_DIR / "node_modules" / "puppeteer-core").is_dir(), "run make firefox (npm ci in tests/console/firefox)"
    stack = embedded_stack
    key = stack.admin("create-key", stack.admin("create-tenant", "console-firefox"))
    model = tiny_onnx(tmp_path / "tiny.onnx")
    np.savez(tmp_path / "rows.npz", x=np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32))
    shots = Path(os.environ.get("SHRINK_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SHRINK_URL": stack.base, "SHRINK_API_KEY": key, "MODEL_FILE": str(model),
           "DATASET_FILE": str(tmp_path / "rows.npz"), "SCREENSHOT_DIR": str(shots), "FIREFOX": firefox,
           "HOME": str(tmp_path)}  # Firefox writes its profile's leftovers under HOME
    done = subprocess.run([node, str(SCRIPT_DIR / "flow.mjs")], env=env, cwd=SCRIPT_DIR, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}\n{stack.log_tail(2000)}"
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    api = httpx.Client(base_url=stack.base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    job = api.get(f"/v1/jobs/{seen['job_id']}").json()
    assert seen["browser"].startswith("firefox/") and not seen["failures"], seen
    assert job["state"] == "succeeded" and job["spec"]["recipe"] == [{"op": "quantize", "method": "fp16"}]
    bench = job["spec"]["benchmark"]
    assert (bench["batch_sizes"], bench["warmup_runs"], bench["max_runs"], bench["measure_memory"]) == ([1], 2, 30, False)
    assert seen["event_stream"] and seen["progress"] == 1  # watched live over the event stream
    artifact = next(a for a in api.get(f"/v1/jobs/{seen['job_id']}/artifacts").json()["items"] if a["kind"] == "model")
    assert seen["downloaded"] == {"size": artifact["size_bytes"], "sha256": artifact["sha256"]}
    assert seen["stored"] == 0  # the key is kept nowhere a script reads: the session is an HttpOnly cookie
    assert seen["wide"] and seen["narrow"]  # nothing wider than the window at 1280 and 800 pixels
    assert seen["after_sign_out"] == 401
    assert (shots / "console-firefox-1280.png").stat().st_size > 10_000
