"""The repository stands alone and keeps its shape: the README is a user's page, every link in
the docs leads somewhere, no file cites notes that are not in the repository, and no module of the
service or the engine grows past what a reader takes in at once."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 400
README_MAX_LINES = 250
# Assembled, so that this file does not cite them itself.
OUTSIDE_NOTES = tuple(name + ".md" for name in ("DESIGN", "STYLE", "LIBRARY-NOTES"))


def _tracked_text_files() -> list[Path]:
    skip = {".git", ".venv", ".venv-peers", ".cache", "var", "node_modules", "__pycache__"}
    suffixes = {".py", ".md", ".toml", ".yml", ".yaml", ".ini", ".cfg", ".txt", ".sh", ".mako"}
    found = []
    for path in ROOT.rglob("*"):
        if any(part in skip or part.endswith(".egg-info") for part in path.relative_to(ROOT).parts):
            continue
        if path.is_file() and (path.suffix in suffixes or path.name in {"Makefile", "Dockerfile", "run"}):
            found.append(path)
    return found


def test_readme_is_a_users_page_that_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the rest belongs in docs/"
    first_block = "\n".join(lines[: lines.index("```", lines.index("```sh") + 1)])
    assert "make run" in first_block and "make test" in first_block


def test_every_relative_link_in_the_docs_leads_to_a_file() -> None:
    broken = []
    for doc in [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def test_docs_cited_by_code_exist() -> None:
    missing = set()
    for path in _tracked_text_files():
        for cited in re.findall(r"\bdocs/[\w/.-]+\.md\b", path.read_text(errors="replace")):
            if not (ROOT / cited).is_file():
                missing.add(f"{path.relative_to(ROOT)} -> {cited}")
    assert not missing, sorted(missing)


def test_no_file_cites_notes_that_are_not_in_the_repository() -> None:
    citing = [
        str(path.relative_to(ROOT))
        for path in _tracked_text_files()
        if any(note in path.read_text(errors="replace") for note in OUTSIDE_NOTES)
    ]
    assert not citing, citing


def test_no_module_of_the_service_or_the_engine_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): count
        for package in ("api", "core", "worker", "engine")
        for path in (ROOT / package).rglob("*.py")
        if (count := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_the_contributing_guides_worked_example_is_the_real_pass_file() -> None:
    guide = (ROOT / "docs" / "contributing.md").read_text()
    shown = guide.split("The pass file, as it is in the repository:\n\n```python\n", 1)[1].split("```\n", 1)[0]
    assert shown == (ROOT / "engine" / "passes" / "quantize_fp16.py").read_text()
