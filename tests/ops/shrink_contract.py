"""What the deploy files may rely on: the ``shrink`` command line and the ``SHRINK_*`` variables.

Both are read from the real code (the commands of ``core.cli.app``, ``core.settings.Settings`` and
the variables ``core/cli.py`` reads itself), so a renamed flag or setting fails these tests instead
of a deployment.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import typer.main

from core.cli import app
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIX = "SHRINK_"
TINI = "/usr/bin/tini"


def cli_env_names() -> set[str]:
    """The SHRINK_* variables that core/cli.py reads itself (API host and port, worker queues...)."""
    source = (ROOT / "core" / "cli.py").read_text()
    return set(re.findall(r"""os\.environ\.get\(\s*["'](SHRINK_[A-Z0-9_]+)["']""", source))


def setting_env_names() -> set[str]:
    prefix = Settings.model_config.get("env_prefix", "")
    assert prefix.upper() == ENV_PREFIX
    return {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}


def known_env_names() -> set[str]:
    return setting_env_names() | cli_env_names()


def unknown_shrink_names(names: set[str]) -> set[str]:
    """The SHRINK_* names among ``names`` that neither Settings nor the CLI reads."""
    known = known_env_names()
    return {
        name for name in names if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    }


def strip_init(argv: list[str]) -> list[str]:
    """The command after the image's init (``tini --``), which only forwards signals."""
    if argv and argv[0] in {TINI, "tini"}:
        argv = argv[1:]
        if argv and argv[0] == "--":
            argv = argv[1:]
    return argv


def parse_shrink_command(argv: list[str]) -> argparse.Namespace:
    """Parse ``shrink ...`` with the real command tree, without running anything: each command's
    callback, in a fresh copy of the tree, records its arguments instead. ``command`` is the
    command's name (``admin_command`` the admin subcommand's)."""
    assert argv, "empty command"
    assert argv[0] == "shrink", f"command must start with the `shrink` console script: {argv}"
    assert all(isinstance(word, str) for word in argv), f"every word must be a string: {argv}"
    tree = typer.main.get_command(app)  # new objects on every call: the app itself is untouched
    parsed: dict[str, object] = {}

    def record(node: object, path: tuple[str, ...]) -> None:
        for name, sub in getattr(node, "commands", {}).items():
            if hasattr(sub, "commands"):
                record(sub, (*path, name))
            else:
                names = dict(zip(("command", "admin_command"), (*path, name), strict=False))
                sub.callback = lambda names=names, **params: parsed.update(names, **params)

    record(tree, ())
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            tree.main(args=argv[1:], prog_name="shrink", standalone_mode=False)
    except Exception as refused:  # typer's usage errors
        raise AssertionError(f"`{' '.join(argv)}` is refused by core.cli: {refused}") from refused
    assert parsed, f"`{' '.join(argv)}` names no command"
    return argparse.Namespace(**parsed)


@contextlib.contextmanager
def shrink_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Exactly ``values`` as the SHRINK_* environment (others removed), restored afterwards."""
    saved = {
        name: value for name, value in os.environ.items() if name.upper().startswith(ENV_PREFIX)
    }
    for name in saved:
        del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        for name in [name for name in os.environ if name.upper().startswith(ENV_PREFIX)]:
            del os.environ[name]
        os.environ.update(saved)


def settings_from(values: Mapping[str, str]) -> Settings:
    """Settings as the app would build them from exactly this environment."""
    with shrink_environment(values):
        return Settings()
