"""What a failed job tells its user: the engine's own errors as they are, anything unexpected as
``engine_internal`` with no server path in its message."""

from __future__ import annotations

from engine.errors import DatasetInvalid
from engine.job import error_payload


def test_unexpected_errors_name_no_server_path() -> None:
    exc = FileNotFoundError(2, "No such file or directory", "/srv/shrink/var/work/job_1/attempt-1/model.onnx")
    payload = error_payload(exc)
    assert payload["code"] == "engine_internal" and payload["user_error"] is False
    assert "/srv" not in payload["message"] and "attempt-1" not in payload["message"]
    assert payload["message"].startswith("FileNotFoundError: ")


def test_engine_errors_keep_their_code_and_message() -> None:
    payload = error_payload(DatasetInvalid("line 3: labels must be on every line or none"))
    assert payload["code"] == "dataset_invalid" and payload["user_error"] is True
    assert payload["message"] == "line 3: labels must be on every line or none"
