"""README.md's code runs as a reader would run it, against the service started as processes, so
that the README cannot rot: the curl walkthrough, the five lines of Python and the one command.

Each block is found by the marker comment before its fence (`<!-- readme-test: NAME ... -->`),
never by its position, so the README may reorder or rewrite its examples. What the test changes
in a block: the service's address (the README's is `make run`'s http://127.0.0.1:8000), and the
walkthrough's `.venv` is the test's virtual environment. The Python block and the command take
the walkthrough's KEY and cnn.onnx, as a reader following the README has them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest

from bench.stack import ServiceStack
from tests.examples.conftest import ROOT

README_URL = "http://127.0.0.1:8000"
MARKED = re.compile(r"<!-- readme-test: (?P<name>[\w-]+)\b[^>]*-->\n```(?P<lang>\w+)\n(?P<code>.*?)^```$", re.S | re.M)


def readme_blocks() -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for match in MARKED.finditer((ROOT / "README.md").read_text()):
        assert match["name"] not in found, f"two README blocks are marked {match['name']}"
        found[match["name"]] = (match["lang"], match["code"])
    return found


@dataclass
class Walkthrough:
    folder: Path
    key: str
    stdout: str
    env: dict[str, str]


def _block(name: str, lang: str, base: str) -> str:
    found_lang, code = readme_blocks()[name]
    assert found_lang == lang, f"README block {name} is {found_lang}, not {lang}"
    return code.replace(README_URL, base)


@pytest.fixture(scope="module")
def walkthrough(examples_stack: ServiceStack, tmp_path_factory: pytest.TempPathFactory) -> Walkthrough:
    folder = tmp_path_factory.mktemp("reader")
    (folder / ".venv").symlink_to(Path(sys.executable).parent.parent)
    # The reader's shell keeps KEY; the test takes it from there.
    script = _block("curl", "sh", examples_stack.base) + '\nprintf "%s" "$KEY" > .readme-key\n'
    env = {**examples_stack.env, "PATH": f"{folder / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Walkthrough(folder, (folder / ".readme-key").read_text(), done.stdout, env)


def test_the_curl_walkthrough_uploads_compresses_reports_and_downloads(walkthrough: Walkthrough) -> None:
    folder = walkthrough.folder
    original, compressed = folder / "cnn.onnx", folder / "cnn-small.onnx"
    onnx.checker.check_model(onnx.load(str(compressed)))
    assert compressed.read_bytes() != original.read_bytes()
    assert "<html" in (folder / "report.html").read_text()[:2000].lower()
    assert "event: end" in walkthrough.stdout and "event: candidate" in walkthrough.stdout
    # What the README says: a goal met, the best never slower than the original.
    assert '"goal_met": true' in walkthrough.stdout and '"pareto_front"' in walkthrough.stdout


def _best_model(folder: Path) -> list[Path]:
    return [p for p in (folder / "out").glob("*") if p.suffix == ".onnx"]


def test_the_five_lines_of_python_end_as_the_readme_says(walkthrough: Walkthrough, examples_stack: ServiceStack) -> None:
    code = _block("python", "python", examples_stack.base)
    assert len(code.strip().splitlines()) == 5
    script = f"import os\nKEY = os.environ['README_KEY']\n{code}"
    done = subprocess.run([sys.executable, "-c", script], cwd=walkthrough.folder, capture_output=True, text=True,
                          env={**walkthrough.env, "README_KEY": walkthrough.key}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(_best_model(walkthrough.folder)) == 1


def test_the_one_command_ends_as_the_readme_says(walkthrough: Walkthrough, examples_stack: ServiceStack) -> None:
    code = _block("cli", "sh", examples_stack.base)
    for old in _best_model(walkthrough.folder):
        old.unlink()
    env = {**walkthrough.env, "KEY": walkthrough.key, "SHRINK_URL": examples_stack.base}
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", code], cwd=walkthrough.folder, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    [model] = _best_model(walkthrough.folder)
    onnx.checker.check_model(onnx.load(str(model)))


def test_every_marked_block_is_one_this_test_runs() -> None:
    assert set(readme_blocks()) == {"curl", "python", "cli"}
