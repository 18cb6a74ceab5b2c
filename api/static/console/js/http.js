// The API over fetch and XMLHttpRequest, signed in by the session cookie. The CSRF token lives
// in memory only (GET /v1/session gives it again after a reload); no key is ever stored.

let csrfToken = "";
const signedOutListeners = [];

export function setCsrf(token) { csrfToken = token || ""; }
export function onSignedOut(listener) { signedOutListeners.push(listener); }

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `the service answered ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
    this.detail = error.detail || {};
  }
}

function refused(status, body) {
  const error = new ApiError(status, body);
  if (status === 401) for (const listener of signedOutListeners) listener(error);
  return error;
}

function headers(method, json) {
  const out = {};
  if (json) out["Content-Type"] = "application/json";
  if (!["GET", "HEAD"].includes(method)) out["X-CSRF-Token"] = csrfToken;
  return out;
}

export async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: headers(method, body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) throw refused(response.status, data);
  return data;
}

// Upload a file as the raw body (the server streams it to disk while hashing): XMLHttpRequest,
// because fetch reports no upload progress.
export function upload(kind, file, name, onProgress) {
  return new Promise((resolve, reject) => {
    const query = new URLSearchParams({ filename: file.name, name: name || file.name });
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/${kind}?${query}`);
    for (const [header, value] of Object.entries(headers("POST", false))) xhr.setRequestHeader(header, value);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(refused(xhr.status, data));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, { error: { code: "network_error", message: "the upload did not reach the service" } })));
    xhr.send(file);
  });
}
