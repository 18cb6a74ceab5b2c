"""One webhook POST, connected to an address resolved and checked beforehand (``urls.Target``).

httpx would resolve the URL's host again when it connects, and that second answer is the one an
attacker controlling the DNS would change (rebinding). So the request goes to the address itself,
and the host name travels where the server needs it: the ``Host`` header, and for https the TLS
server name (SNI) that the certificate is verified against (httpcore's ``sni_hostname`` request
extension, httpx 0.28 / httpcore 1.0)."""

from __future__ import annotations

import ssl

import httpx

from core.webhooks.urls import Target


def post(url: str, target: Target, body: bytes, headers: dict[str, str], *, timeout: float,
         verify: ssl.SSLContext | bool = True) -> int:
    """POST ``body`` to ``url`` at ``target.address``; the response's status code. Redirects are
    not followed, and proxy settings from the environment are ignored (a proxy would resolve the
    name itself)."""
    original = httpx.URL(url)
    pinned = original.copy_with(host=target.address)
    request_headers = {**headers, "Host": original.netloc.decode("ascii"), "Content-Type": "application/json"}
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False, verify=verify) as client:
        response = client.post(pinned, content=body, headers=request_headers,
                               extensions={"sni_hostname": target.host} if original.scheme == "https" else {})
    return response.status_code
