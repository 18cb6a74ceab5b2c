"""A one-line progress display on a terminal (``\\r`` redrawn); silent when not on a terminal."""

from __future__ import annotations

import sys
from typing import TextIO

from shrink_client.records import JobRecord

WIDTH = 24


class ProgressLine:
    def __init__(self, enabled: bool | None = None, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._shown = False

    def job(self, job: JobRecord) -> None:
        fraction = min(max(job.progress.fraction, 0.0), 1.0)
        filled = int(fraction * WIDTH)
        stage = job.progress.stage or job.state
        self._draw(f"{job.id} {job.state:<9} [{'#' * filled}{'.' * (WIDTH - filled)}] {fraction:4.0%} {stage}")

    def bytes(self, label: str, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        filled = int(fraction * WIDTH)
        self._draw(f"{label} [{'#' * filled}{'.' * (WIDTH - filled)}] {fraction:4.0%} {done / 1e6:.1f}/{total / 1e6:.1f} MB")

    def _draw(self, text: str) -> None:
        if not self.enabled:
            return
        self.stream.write("\r" + text[:120].ljust(120))
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False
