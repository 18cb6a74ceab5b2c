"""The web console's session (api/console/session.py): the cookie and its flags, CSRF on every
state-changing request made with it, a revoked or expired key ending its sessions at once,
expiry, tenant isolation through the cookie, and the API docs behind a key. In-process, on
SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.db import session_scope
from core.models import ApiKey, StoredModel
from core.tenants import service as tenants
from tests.services import clear_caches

COOKIE = "shrink_session"
ROTATE = "/v1/webhooks/secret/rotate"  # a state-changing route with no side effect elsewhere


@pytest.fixture
def app(db_env: dict[str, str]) -> Any:
    from api.app import create_app

    return create_app()


def _tenant_with_model(name: str) -> tuple[str, str, str]:
    """(tenant id, key id, full key) of a new tenant with one stored model ``mdl_<name>``."""
    with session_scope() as session:
        tenant = tenants.create_tenant(session, name)
        key, full = tenants.create_api_key(session, tenant.id)
        session.add(StoredModel(id=f"mdl_{name}", tenant_id=tenant.id, name=name, format="onnx", size_bytes=1,
                                sha256="0" * 64, storage_key="k", info={}))
        return tenant.id, key.id, full


@pytest.fixture
def alice(db_env: dict[str, str]) -> tuple[str, str, str]:
    return _tenant_with_model("alice")


def _signed_in(app: Any, key: str, base_url: str = "http://testserver") -> tuple[TestClient, dict[str, Any]]:
    client = TestClient(app, base_url=base_url)
    response = client.post("/v1/session", json={"api_key": key})
    assert response.status_code == 200, response.text
    return client, response.json()


def _set_cookie(response: Any) -> str:
    return response.headers["set-cookie"]


@pytest.mark.parametrize("db_env", ["sqlite", "postgresql"], indirect=True)
def test_sign_in_sets_a_signed_httponly_strict_cookie_and_returns_a_csrf_token(app: Any, alice: tuple[str, str, str]) -> None:
    tenant_id, key_id, key = alice
    client = TestClient(app)
    response = client.post("/v1/session", json={"api_key": key})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenant_id"] == tenant_id and body["key_id"] == key_id and body["tenant_name"] == "alice"
    assert len(body["csrf_token"]) >= 40
    header = _set_cookie(response)
    flags = {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")}
    assert "httponly" in flags and flags["samesite"].lower() == "samesite=strict" and flags["path"] == "Path=/"
    assert "secure" not in flags  # plain http: a Secure cookie would never come back
    max_age = int(flags["max-age"].split("=")[1])
    assert 8 * 3600 - 60 <= max_age <= 8 * 3600
    value = client.cookies[COOKIE]
    assert value.startswith(f"{key_id}.") and key not in header  # names the key id, never the key
    # The cookie alone reads; GET /v1/session gives the same CSRF token again after a reload.
    assert client.get("/v1/models").json()["items"][0]["id"] == "mdl_alice"
    again = client.get("/v1/session")
    assert again.status_code == 200 and again.json()["csrf_token"] == body["csrf_token"]
    # Over https the cookie is Secure.
    secure = TestClient(app, base_url="https://testserver").post("/v1/session", json={"api_key": key})
    assert "secure" in _set_cookie(secure).lower()


@pytest.mark.parametrize("db_env", ["sqlite"], indirect=True)
def test_a_wrong_key_gets_no_cookie(app: Any, alice: tuple[str, str, str]) -> None:
    client = TestClient(app)
    for wrong in ("shk_nope_nope", "abc", alice[2] + "x"):
        response = client.post("/v1/session", json={"api_key": wrong})
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key", wrong
        assert "set-cookie" not in response.headers
    assert client.post("/v1/session", json={}).status_code == 422


@pytest.mark.parametrize("db_env", ["sqlite", "postgresql"], indirect=True)
def test_a_change_made_with_the_cookie_needs_the_csrf_token(app: Any, alice: tuple[str, str, str]) -> None:
    client, body = _signed_in(app, alice[2])
    for headers in ({}, {"X-CSRF-Token": "nope"}, {"X-CSRF-Token": body["csrf_token"][:-1]}):
        refused = client.post(ROTATE, headers=headers)
        assert refused.status_code == 403, (headers, refused.text)
        error = refused.json()["error"]
        assert error["code"] == "csrf_failed" and "X-CSRF-Token" in error["message"]
    # Every state-changing method, not only POST: a refused DELETE leaves the model in place.
    assert client.delete("/v1/models/mdl_alice").status_code == 403
    assert client.get("/v1/models/mdl_alice").status_code == 200
    before = client.get("/v1/webhooks/secret").json()["secret"]
    accepted = client.post(ROTATE, headers={"X-CSRF-Token": body["csrf_token"]})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["secret"] != before
    # A Bearer request needs no token: a browser never sends the header by itself.
    bearer = TestClient(app).post(ROTATE, headers={"Authorization": f"Bearer {alice[2]}"})
    assert bearer.status_code == 200


@pytest.mark.parametrize("db_env", ["sqlite", "postgresql"], indirect=True)
def test_a_revoked_key_ends_its_sessions_at_once(app: Any, alice: tuple[str, str, str]) -> None:
    client, _ = _signed_in(app, alice[2])
    assert client.get("/v1/jobs").status_code == 200
    with session_scope() as session:
        tenants.revoke_api_key(session, alice[1])
    for path in ("/v1/jobs", "/v1/session", "/openapi.json"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "session_invalid"


@pytest.mark.parametrize("db_env", ["sqlite"], indirect=True)
def test_a_session_expires_and_never_outlives_its_key(app: Any, alice: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from api.console import session as console_session

    with session_scope() as session:
        key = session.get(ApiKey, alice[1])
        stale = console_session.issue(key.id, key.expires_at, now=time.time() - 8 * 3600 - 1)
        fresh = console_session.issue(key.id, key.expires_at)
    assert stale.expires < time.time() <= fresh.expires
    client = TestClient(app)
    client.cookies.set(COOKIE, stale.value)
    response = client.get("/v1/jobs")
    assert response.status_code == 401 and response.json()["error"]["code"] == "session_invalid"
    # A forged expiry breaks the signature.
    key_id, expires, signature = stale.value.split(".")
    client.cookies.set(COOKIE, f"{key_id}.{int(expires) + 10 * 3600}.{signature}")
    assert client.get("/v1/jobs").json()["error"]["code"] == "session_invalid"
    client.cookies.set(COOKIE, fresh.value)
    assert client.get("/v1/jobs").status_code == 200

    # The lifetime is a setting, and a key rotated with a short grace bounds its sessions.
    monkeypatch.setenv("SHRINK_SESSION_SECONDS", "120")
    clear_caches()
    response = TestClient(app).post("/v1/session", json={"api_key": alice[2]})
    assert "Max-Age=120" in _set_cookie(response) or "Max-Age=119" in _set_cookie(response)
    with session_scope() as session:
        tenants.rotate_api_key(session, alice[1], grace=timedelta(seconds=30))
    response = TestClient(app).post("/v1/session", json={"api_key": alice[2]})
    max_age = int(_set_cookie(response).split("Max-Age=")[1].split(";")[0])
    assert 0 < max_age <= 30


@pytest.mark.parametrize("db_env", ["sqlite"], indirect=True)
def test_a_cookie_signed_with_another_secret_is_refused(app: Any, alice: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = _signed_in(app, alice[2])
    value = client.cookies[COOKIE]
    monkeypatch.setenv("SHRINK_SECRET_KEY", "another-secret-of-this-service-0123456789")
    clear_caches()
    other = TestClient(app)
    other.cookies.set(COOKIE, value)
    assert other.get("/v1/jobs").json()["error"]["code"] == "session_invalid"


@pytest.mark.parametrize("db_env", ["sqlite", "postgresql"], indirect=True)
def test_a_cookie_reaches_only_its_own_tenant(app: Any, alice: tuple[str, str, str]) -> None:
    _, _, bob_key = _tenant_with_model("bob")
    client, _ = _signed_in(app, alice[2])
    assert [m["id"] for m in client.get("/v1/models").json()["items"]] == ["mdl_alice"]
    for path in ("/v1/models/mdl_bob",):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found", response.text
    bob, bob_session = _signed_in(app, bob_key)
    assert [m["id"] for m in bob.get("/v1/models").json()["items"]] == ["mdl_bob"]
    # Bob's CSRF token is no use with Alice's cookie.
    assert client.delete("/v1/models/mdl_alice", headers={"X-CSRF-Token": bob_session["csrf_token"]}).status_code == 403


@pytest.mark.parametrize("db_env", ["sqlite"], indirect=True)
def test_rate_limits_apply_to_the_cookie_too(app: Any, alice: tuple[str, str, str]) -> None:
    with session_scope() as session:
        tenants.set_quota(session, alice[0], requests_per_second=2)
    client, _ = _signed_in(app, alice[2])
    statuses = [client.get("/v1/jobs").status_code for _ in range(6)]
    assert 429 in statuses, statuses


@pytest.mark.parametrize("db_env", ["sqlite"], indirect=True)
def test_sign_out_clears_the_cookie(app: Any, alice: tuple[str, str, str]) -> None:
    client, _ = _signed_in(app, alice[2])
    response = client.delete("/v1/session")
    assert response.status_code == 204
    assert "Max-Age=0" in _set_cookie(response) and COOKIE not in client.cookies
    assert client.get("/v1/jobs").json()["error"]["code"] == "missing_api_key"


@pytest.mark.parametrize("db_env", ["sqlite"], indirect=True)
def test_the_api_docs_need_a_key_or_the_console_session(app: Any, alice: tuple[str, str, str]) -> None:
    anonymous = TestClient(app)
    bearer = TestClient(app, headers={"Authorization": f"Bearer {alice[2]}"})
    browser, _ = _signed_in(app, alice[2])
    for path in ("/openapi.json", "/docs", "/redoc"):
        refused = anonymous.get(path)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_api_key", path
        assert bearer.get(path).status_code == 200, path
        assert browser.get(path).status_code == 200, path
    document = bearer.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["session"] == {
        "type": "apiKey", "in": "cookie", "name": COOKIE, "description": document["components"]["securitySchemes"]["session"]["description"],
    }
    assert "security" not in document["paths"]["/v1/session"]["post"]


@pytest.mark.parametrize("db_env", ["sqlite"], indirect=True)
def test_the_console_page_allows_only_its_own_assets(app: Any) -> None:
    client = TestClient(app)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp and "*" not in csp
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["referrer-policy"] == "same-origin"
    assert "<script>" not in page.text and "<style" not in page.text and " style=" not in page.text
    for asset in ("/static/console/console.css", "/static/console/js/main.js", "/static/console/js/jobs.js"):
        response = client.get(asset)
        assert response.status_code == 200 and response.headers["x-content-type-options"] == "nosniff", asset
        if asset.endswith(".js"):
            assert "javascript" in response.headers["content-type"]
            # Server data goes through textContent and attributes only, never parsed as HTML.
            assert "innerHTML" not in response.text and "insertAdjacentHTML" not in response.text
            assert "localStorage" not in response.text and "sessionStorage" not in response.text
