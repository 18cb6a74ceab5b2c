// Models and datasets: upload with a progress bar, list, delete.

import { $, bytes, h, notice, problem, when } from "./dom.js";
import { api, upload } from "./http.js";

export const records = { models: [], datasets: [] };
const listeners = [];
const SINGULAR = { models: "model", datasets: "dataset" };

export function onRecordsChanged(listener) { listeners.push(listener); }

function describe(kind, row) {
  const info = row.info || {};
  if (kind === "models") return [row.format, info.params ? `${Number(info.params).toLocaleString()} parameters` : null, bytes(row.size_bytes)];
  return [row.format, info.rows !== undefined ? `${info.rows} rows` : null, bytes(row.size_bytes)];
}

function render(kind) {
  const list = $(`#${kind}-list`);
  const rows = records[kind];
  list.replaceChildren(...(rows.length ? rows.map((row) => h("li", { "data-id": row.id },
    h("span", { class: "name" }, row.name),
    h("span", { class: "meta" }, [row.id, ...describe(kind, row), when(row.created_at)].filter(Boolean).join(" · ")),
    h("span", { class: "actions" },
      h("button", { type: "button", class: "danger small", "aria-label": `Delete ${SINGULAR[kind]} ${row.name} (${row.id})`,
        onclick: () => remove(kind, row) }, "Delete")),
  )) : [h("li", { class: "meta" }, `No ${kind} yet.`)]));
}

export async function loadRecords(kind) {
  const page = await api("GET", `/v1/${kind}?limit=200`);
  records[kind] = page.items;
  render(kind);
  for (const listener of listeners) listener(kind);
}

async function remove(kind, row) {
  if (!window.confirm(`Delete ${SINGULAR[kind]} ${row.name} (${row.id})?`)) return;
  try {
    await api("DELETE", `/v1/${kind}/${encodeURIComponent(row.id)}`);
    notice(`Deleted ${SINGULAR[kind]} ${row.name}.`);
    problem(null);
    await loadRecords(kind);
  } catch (error) {
    problem(error);
  }
}

function wireUpload(form) {
  const kind = form.dataset.kind;
  const file = form.querySelector("input[type=file]");
  const name = form.querySelector("input[type=text]");
  const bar = form.querySelector("progress");
  const button = form.querySelector("button");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file.files.length) return;
    const chosen = file.files[0];
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    notice(`Uploading ${chosen.name}...`);
    try {
      const row = await upload(kind, chosen, name.value.trim(), (fraction) => { bar.value = fraction; });
      bar.value = 1;
      notice(`Uploaded ${SINGULAR[kind]} ${row.name} (${row.id}).`);
      problem(null);
      form.reset();
      await loadRecords(kind);
    } catch (error) {
      problem(error);
    } finally {
      button.disabled = false;
      bar.hidden = true;
    }
  });
}

export function initAssets() {
  for (const form of document.querySelectorAll("form.upload")) wireUpload(form);
}
