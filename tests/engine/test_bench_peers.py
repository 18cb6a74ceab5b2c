"""bench/quantize_peers.py's table logic, without the peers' packages: which recipe the closing
line names, what a failed peer's row says, and that the `peers` extra is the requirements file
`make bench-peers` installs."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from bench import quantize_peers as qp
from bench.quantize_peers import DEFAULT, Row

ROOT = Path(__file__).resolve().parents[2]


def rows() -> list[Row]:
    return [
        Row("fast but lossy", b1=3.0, b8=3.0, cos_mean=0.990, cos_min=0.95, size_mb=23.0),
        Row("peer", b1=1.9, b8=2.1, cos_mean=0.996, cos_min=0.98, size_mb=23.0),
        Row("broken peer", failed="ModuleNotFoundError: No module named 'x'"),
        Row(DEFAULT, b1=2.2, b8=1.7, cos_mean=0.998, cos_min=0.99, size_mb=23.1),
    ]


def test_fastest_skips_recipes_under_the_cosine_bar_and_failed_ones() -> None:
    # peer: sqrt(1.9 * 2.1) = 1.997 beats the default's sqrt(2.2 * 1.7) = 1.934; the lossy one is
    # faster still but under 0.995, the failed one has no figures.
    assert qp.fastest(rows()).name == "peer"
    assert qp.fastest(rows(), bar=0.997).name == DEFAULT
    assert qp.fastest(rows(), bar=0.999) is None
    assert qp.fastest([Row("x", failed="no")]) is None


def test_closing_line_says_when_the_fastest_is_not_shrinks_default() -> None:
    line = qp.verdict(rows())
    assert "peer (1.90x at b1, 2.10x at b8" in line
    assert "not Shrink's default (2.20x at b1, 1.70x at b8, cosine 0.9980)" in line
    assert qp.verdict(rows(), bar=0.997).endswith(": Shrink's default.")
    assert qp.verdict(rows(), bar=0.999) == "No recipe reached mean cosine >= 0.999."
    failed_default = [r for r in rows() if r.name != DEFAULT] + [Row(DEFAULT, failed="boom")]
    assert "not Shrink's default, which produced no figures here" in qp.verdict(failed_default)


def test_a_failed_peer_gets_a_row_with_its_reason_and_no_figures() -> None:
    lines = qp.table(rows())
    assert lines[0] == "| recipe | b1 speedup | b8 speedup | cos mean | cos min | size MB |"
    assert lines[4] == "| broken peer | failed: ModuleNotFoundError: No module named 'x' | - | - | - | - |"
    assert lines[3] == "| peer | 1.90x | 2.10x | 0.9960 | 0.9800 | 23.0 |"
    assert all(line.count("|") == 7 for line in lines)


def test_a_reason_is_the_last_line_of_a_traceback_fit_for_one_cell() -> None:
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: a | b\n\n'
    assert qp.one_line(traceback) == "ValueError: a / b"
    assert len(qp.one_line("E" * 500)) == 160
    assert qp.one_line("  \n") == "no message"


def test_a_peer_without_its_venv_or_that_fails_becomes_a_reason(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(qp, "PEERS_PYTHON", tmp_path / "missing" / "python")
    reason = qp.run_peer("nncf", tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "c.npz", 60)
    assert "is not installed (make bench-peers builds it)" in reason
    # A real subprocess that fails: a peer's name the module does not know.
    monkeypatch.setattr(qp, "PEERS_PYTHON", Path(sys.executable))
    reason = qp.run_peer("no-such-peer", tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "c.npz", 60)
    assert "invalid choice: 'no-such-peer'" in reason and "\n" not in reason


def test_the_peers_extra_is_the_requirements_file_make_installs() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["peers"]
    listed = [
        line.split("#", 1)[0].strip()
        for line in (ROOT / "bench" / "peers-requirements.txt").read_text().splitlines()
        if line.split("#", 1)[0].strip()
    ]
    assert listed == extra
    assert all(re.search(r"==\d", req) for req in extra), "every peer package pinned"
    assert "bench/peers-requirements.txt" in (ROOT / "Makefile").read_text()
