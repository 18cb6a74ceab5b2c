// The console's start: sign in (the API key is traded once for the session cookie and never
// kept), then the models, datasets, the job form and the jobs.

import { initAssets, loadRecords } from "./assets.js";
import { $, notice, problem } from "./dom.js";
import { api, onSignedOut, setCsrf } from "./http.js";
import { loadJobs, openJob } from "./jobs.js";
import { buildJobForm } from "./submit.js";

let started = false;

function showSignIn(message) {
  setCsrf("");
  $("#app").hidden = true;
  $("#signed-in-nav").hidden = true;
  $("#sign-in").hidden = false;
  if (message) problem({ message });
  $("#api-key").focus();
}

async function start(session) {
  setCsrf(session.csrf_token);
  $("#who").textContent = `${session.tenant_name} (${session.tenant_id})`;
  $("#sign-in").hidden = true;
  $("#signed-in-nav").hidden = false;
  $("#app").hidden = false;
  problem(null);
  if (started) return;
  started = true;
  initAssets();
  const capabilities = await api("GET", "/v1/capabilities");
  buildJobForm(capabilities, (job) => { loadJobs().catch(problem); openJob(job.id); });
  await Promise.all([loadRecords("models"), loadRecords("datasets"), loadJobs()]);
}

$("#sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const field = $("#api-key");
  try {
    const session = await api("POST", "/v1/session", { api_key: field.value.trim() });
    field.value = "";
    notice(`Signed in as ${session.tenant_name}.`);
    await start(session);
  } catch (error) {
    problem(error);
  }
});

$("#sign-out").addEventListener("click", async () => {
  try { await api("DELETE", "/v1/session"); } finally { window.location.reload(); }
});

$("#jobs-refresh").addEventListener("click", () => loadJobs().catch(problem));

onSignedOut((error) => { if (started) showSignIn(error.message); });

api("GET", "/v1/session").then(start).catch(() => showSignIn());
