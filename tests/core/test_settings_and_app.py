"""Settings refuse unsafe production configurations; CORS is configurable for web clients."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from core.settings import DEFAULT_SECRET, Settings
from tests.services import clear_caches


def test_production_refuses_the_default_or_a_short_secret() -> None:
    with pytest.raises(ValidationError, match="SHRINK_SECRET_KEY"):
        Settings(env="production", secret_key=DEFAULT_SECRET)
    with pytest.raises(ValidationError, match="32 characters"):
        Settings(env="production", secret_key="short")
    assert Settings(env="production", secret_key="x" * 40).env == "production"


def test_settings_come_from_shrink_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHRINK_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("SHRINK_CORS_ORIGINS", '["https://ui.example.com"]')
    settings = Settings()
    assert settings.max_upload_bytes == 1234 and settings.cors_origins == ["https://ui.example.com"]


def test_cors_preflight_allows_configured_origins_only(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("SHRINK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SHRINK_CORS_ORIGINS", '["https://ui.example.com"]')
    clear_caches()
    try:
        from api.app import create_app

        client = TestClient(create_app())
        headers = {"Origin": "https://ui.example.com", "Access-Control-Request-Method": "POST",
                   "Access-Control-Request-Headers": "authorization,idempotency-key"}
        ok = client.options("/v1/jobs", headers=headers)
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://ui.example.com"
        denied = client.options("/v1/jobs", headers={**headers, "Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in denied.headers
    finally:
        clear_caches()
