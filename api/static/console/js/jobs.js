// Jobs: the list, and one job watched live over its server-sent events (state, progress, log),
// with its report, its artifacts, cancel and delete.

import { $, bytes, h, notice, problem, when } from "./dom.js";
import { api } from "./http.js";

const ENDED = new Set(["succeeded", "failed", "canceled"]);
let jobs = [];
let watched = null; // { id, source, view }

const path = (id) => `/v1/jobs/${encodeURIComponent(id)}`;

function stateBadge(state) {
  return h("span", { class: `state state-${state}` }, state);
}

function renderList() {
  $("#jobs-list").replaceChildren(...(jobs.length ? jobs.map((job) => h("li", { "data-id": job.id },
    h("span", { class: "name" }, job.id),
    stateBadge(job.state),
    h("span", { class: "meta" }, [job.progress.stage, `${Math.round(job.progress.fraction * 100)}%`, when(job.created_at)].join(" · ")),
    h("span", { class: "actions" },
      h("button", { type: "button", class: "small", "aria-label": `Open job ${job.id}`, onclick: () => openJob(job.id) }, "Open"),
      ENDED.has(job.state) ? null : h("button", { type: "button", class: "danger small", "aria-label": `Cancel job ${job.id}`, onclick: () => cancelJob(job.id) }, "Cancel"),
      h("button", { type: "button", class: "danger small", "aria-label": `Delete job ${job.id}`, onclick: () => deleteJob(job.id) }, "Delete")),
  )) : [h("li", { class: "meta" }, "No jobs yet.")]));
}

export async function loadJobs() {
  jobs = (await api("GET", "/v1/jobs?limit=50")).items;
  renderList();
}

function replaceInList(job) {
  const index = jobs.findIndex((j) => j.id === job.id);
  if (index >= 0) jobs[index] = job; else jobs.unshift(job);
  renderList();
}

async function cancelJob(id) {
  try {
    const job = await api("POST", `${path(id)}/cancel`);
    notice(`Cancel requested for job ${id}.`);
    problem(null);
    replaceInList(job);
    if (watched && watched.id === id) showJob(job);
  } catch (error) {
    problem(error);
  }
}

async function deleteJob(id) {
  if (!window.confirm(`Delete job ${id} with its report and artifacts?`)) return;
  try {
    await api("DELETE", path(id));
    notice(`Deleted job ${id}.`);
    problem(null);
    if (watched && watched.id === id) closeJob();
    jobs = jobs.filter((j) => j.id !== id);
    renderList();
  } catch (error) {
    problem(error);
  }
}

function closeJob() {
  if (watched && watched.source) watched.source.close();
  watched = null;
  $("#job-detail").hidden = true;
  $("#job-detail").replaceChildren();
}

function detailView(id) {
  const view = {
    state: h("span", { id: "job-state", class: "state" }),
    stage: h("dd", { id: "job-stage" }),
    message: h("dd", { id: "job-message" }),
    error: h("p", { class: "problem", role: "alert", hidden: true }),
    bar: h("progress", { id: "job-progress", max: "1", value: "0", "aria-label": "Job progress" }),
    log: h("ol", { class: "log", id: "job-log", "aria-label": "Job log", "aria-live": "polite" }),
    actions: h("div", { class: "row" }),
    artifacts: h("ul", { class: "records", id: "job-artifacts", "aria-label": "Artifacts" }),
    report: h("div", { id: "job-report" }),
  };
  $("#job-detail").replaceChildren(
    h("h2", { id: "job-detail-title" }, `Job ${id} `, view.state,
      h("button", { type: "button", class: "small", "aria-label": "Close job", onclick: closeJob }, "Close")),
    h("dl", { class: "facts" }, h("dt", {}, "Stage"), view.stage, h("dt", {}, "Message"), view.message),
    view.bar, view.error, view.actions,
    h("h3", {}, "Log"), view.log,
    h("h3", {}, "Artifacts"), view.artifacts,
    view.report,
  );
  $("#job-detail").hidden = false;
  return view;
}

function showJob(job) {
  if (!watched || watched.id !== job.id) return;
  const { view } = watched;
  view.state.textContent = job.state;
  view.state.className = `state state-${job.state}`;
  view.stage.textContent = job.progress.stage;
  view.message.textContent = job.progress.message;
  view.bar.value = job.progress.fraction;
  view.error.hidden = !job.error;
  view.error.textContent = job.error ? `${job.error.code || "error"}: ${job.error.message || ""}` : "";
  const buttons = [];
  if (!ENDED.has(job.state)) buttons.push(h("button", { type: "button", class: "danger", onclick: () => cancelJob(job.id) }, "Cancel job"));
  buttons.push(h("button", { type: "button", class: "danger secondary", onclick: () => deleteJob(job.id) }, "Delete job"));
  if (job.state === "succeeded") {
    const report = `${path(job.id)}/report?format=html`;
    buttons.push(h("button", { type: "button", class: "secondary", onclick: () => showReport(report) }, "Show report"));
    buttons.push(h("a", { href: report, target: "_blank", rel: "noopener" }, "Open report in a new tab"));
  }
  view.actions.replaceChildren(...buttons);
  replaceInList(job);
}

function showReport(url) {
  // Sandboxed: the report runs no script, and framed it gets no access to the console.
  watched.view.report.replaceChildren(h("h3", {}, "Report"),
    h("iframe", { src: url, title: "Job report", class: "report-frame", sandbox: "", id: "report-frame" }));
}

async function showArtifacts(id) {
  const { items } = await api("GET", `${path(id)}/artifacts`);
  if (!watched || watched.id !== id) return;
  watched.view.artifacts.replaceChildren(...(items.length ? items.map((a) => h("li", {},
    h("a", { href: a.links.download, download: a.filename, "aria-label": `Download ${a.kind} ${a.filename}` }, a.filename),
    h("span", { class: "meta" }, [a.kind, a.best ? "best" : null, bytes(a.size_bytes), `sha256 ${a.sha256.slice(0, 12)}...`].filter(Boolean).join(" · ")),
  )) : [h("li", { class: "meta" }, "None yet.")]));
}

const LOG_SHOWN = new Set(["at", "level", "event", "message"]);

function logLine(data) {
  const extra = Object.entries(data).filter(([k]) => !LOG_SHOWN.has(k))
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
  const text = [data.event, data.message, extra].filter(Boolean).join(" ");
  const level = data.level ? `[${data.level}] ` : "";
  const at = data.at ? `${new Date(data.at).toLocaleTimeString()} ` : "";
  watched.view.log.append(h("li", {}, `${at}${level}${text}`));
  watched.view.log.scrollTop = watched.view.log.scrollHeight;
}

async function refreshJob(id) {
  const job = await api("GET", path(id));
  showJob(job);
  await showArtifacts(id);
  return job;
}

export async function openJob(id) {
  closeJob();
  watched = { id, source: null, view: detailView(id) };
  $("#job-detail").scrollIntoView({ block: "start" });
  try {
    const job = await refreshJob(id);
    // The stream replays the job's events from the start, then follows it; it ends with `end`.
    const source = new EventSource(`${path(id)}/events`);
    watched.source = source;
    source.addEventListener("state", (event) => {
      const data = JSON.parse(event.data);
      if (!watched || watched.id !== id) return;
      showJob({ ...job, ...currentJob(id), state: data.state, error: data.error || null });
      if (ENDED.has(data.state)) refreshJob(id).catch(problem);
    });
    source.addEventListener("progress", (event) => {
      const data = JSON.parse(event.data);
      const current = currentJob(id) || job;
      showJob({ ...current, progress: { stage: data.stage, fraction: data.fraction, message: data.message } });
    });
    source.addEventListener("log", (event) => { if (watched && watched.id === id) logLine(JSON.parse(event.data)); });
    source.addEventListener("end", () => { source.close(); refreshJob(id).catch(problem); });
    source.addEventListener("error", () => {
      // A closed stream on an ended job is the normal end; otherwise the browser retries.
      if (source.readyState === EventSource.CLOSED) refreshJob(id).catch(problem);
    });
  } catch (error) {
    problem(error);
  }
}

function currentJob(id) {
  return jobs.find((j) => j.id === id);
}
