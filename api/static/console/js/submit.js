// The job form, built from GET /v1/capabilities: recipe steps (an op, its method, the method's
// options from its JSON schema) or, when the service publishes one, a goal; benchmark settings.

import { $, h, notice, problem } from "./dom.js";
import { records, onRecordsChanged } from "./assets.js";
import { api } from "./http.js";
import { schemaFields } from "./schema-form.js";

let capabilities = null;
let steps = [];
let goalFields = null;
let benchmarkFields = null;
let onSubmitted = () => {};

function passOf(op, method) {
  return capabilities.passes.find((p) => p.op === op && p.method === method);
}

function fillRecordSelect(select, rows, optional) {
  const keep = select.value;
  const options = rows.map((row) => h("option", { value: row.id }, `${row.name} (${row.id})`));
  if (optional) options.unshift(h("option", { value: "" }, "none"));
  select.replaceChildren(...options);
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

function stepEditor(index) {
  const number = index + 1;
  const ops = Object.keys(capabilities.ops).sort();
  const opSelect = h("select", { "aria-label": `Step ${number} operation` }, ops.map((op) => h("option", { value: op }, op)));
  const methodSelect = h("select", { "aria-label": `Step ${number} method` });
  const summary = h("p", { class: "hint" });
  const options = h("div");
  const step = { opSelect, methodSelect, fields: null };

  function showMethods() {
    const entry = capabilities.ops[opSelect.value];
    const methods = [entry.default, ...entry.methods.filter((m) => m !== entry.default)];
    methodSelect.replaceChildren(...methods.map((m) => h("option", { value: m }, m === entry.default ? `${m} (default)` : m)));
    showOptions();
  }
  function showOptions() {
    const pass = passOf(opSelect.value, methodSelect.value) || {};
    summary.textContent = [pass.summary, pass.needs_dataset ? "needs a dataset" : null, pass.formats ? `formats: ${pass.formats.join(", ")}` : null]
      .filter(Boolean).join(" · ");
    step.fields = schemaFields(pass.config_schema, { legend: `Step ${number} options`, prefix: `step${number}` });
    options.replaceChildren(step.fields.element);
  }
  opSelect.addEventListener("change", showMethods);
  methodSelect.addEventListener("change", showOptions);
  const remove = h("button", { type: "button", class: "danger small", "aria-label": `Remove step ${number}`,
    onclick: () => { steps.splice(index, 1); renderSteps(); } }, "Remove");
  step.element = h("fieldset", { class: "step" }, h("legend", {}, `Step ${number}`),
    h("div", { class: "row" }, opSelect, methodSelect, steps.length > 0 || index > 0 ? remove : null), summary, options);
  showMethods();
  return step;
}

function renderSteps() {
  // Rebuilt with their choices kept, so that the labels keep naming their position.
  const chosen = steps.map((s) => [s.opSelect.value, s.methodSelect.value]);
  steps = [];
  const container = $("#recipe-steps");
  container.replaceChildren();
  chosen.forEach(([op, method], index) => {
    const step = stepEditor(index);
    step.opSelect.value = op;
    step.opSelect.dispatchEvent(new Event("change"));
    step.methodSelect.value = method;
    step.methodSelect.dispatchEvent(new Event("change"));
    steps.push(step);
    container.append(step.element);
  });
}

function addStep() {
  const step = stepEditor(steps.length);
  steps.push(step);
  $("#recipe-steps").append(step.element);
}

function recipe() {
  return steps.map((s) => ({ op: s.opSelect.value, method: s.methodSelect.value, ...s.fields.values() }));
}

async function submit(event) {
  event.preventDefault();
  const form = event.target;
  const spec = { model_id: form.querySelector("#job-model").value };
  const dataset = form.querySelector("#job-dataset").value;
  if (dataset) spec.dataset_id = dataset;
  try {
    const goalMode = goalFields && form.querySelector("#mode-goal").checked;
    if (goalMode) spec.goal = goalFields.values();
    else spec.recipe = recipe();
    const benchmark = benchmarkFields ? benchmarkFields.values() : {};
    if (Object.keys(benchmark).length) spec.benchmark = benchmark;
  } catch (error) {
    problem(error);
    return;
  }
  if (!spec.model_id) { problem(new Error("upload a model first")); return; }
  try {
    const job = await api("POST", "/v1/jobs", spec);
    notice(`Submitted job ${job.id}.`);
    problem(null);
    onSubmitted(job);
  } catch (error) {
    problem(error);
  }
}

export function buildJobForm(caps, submitted) {
  capabilities = caps;
  onSubmitted = submitted;
  steps = [];
  const form = $("#job-form");
  const modelSelect = h("select", { id: "job-model", required: true });
  const datasetSelect = h("select", { id: "job-dataset" });
  const parts = [
    h("div", { class: "field" }, h("label", { for: "job-model" }, "Model"), modelSelect),
    h("div", { class: "field" }, h("label", { for: "job-dataset" }, "Dataset"), datasetSelect),
  ];
  const recipePart = h("div", { id: "recipe-part" }, h("div", { id: "recipe-steps" }),
    h("button", { type: "button", class: "secondary", onclick: addStep }, "Add step"));
  // Goal mode only where the service describes a goal (capabilities.goal, a JSON schema).
  const goalSchema = caps.goal && caps.goal.properties ? caps.goal : null;
  goalFields = goalSchema ? schemaFields(goalSchema, { legend: "Goal", prefix: "goal" }) : null;
  const goalPart = goalFields ? h("div", { id: "goal-part", hidden: true }, goalFields.element) : null;
  if (goalFields) {
    const choose = () => {
      const goal = form.querySelector("#mode-goal").checked;
      recipePart.hidden = goal;
      goalPart.hidden = !goal;
    };
    parts.push(h("fieldset", { id: "job-mode" }, h("legend", {}, "Build the job from"),
      h("input", { type: "radio", name: "mode", id: "mode-recipe", value: "recipe", checked: true, onchange: choose }),
      h("label", { for: "mode-recipe" }, " a recipe "),
      h("input", { type: "radio", name: "mode", id: "mode-goal", value: "goal", onchange: choose }),
      h("label", { for: "mode-goal" }, " a goal")));
  }
  parts.push(recipePart);
  if (goalPart) parts.push(goalPart);
  benchmarkFields = caps.benchmark_schema ? schemaFields(caps.benchmark_schema, { legend: "Benchmark settings", prefix: "bench" }) : null;
  if (benchmarkFields) parts.push(h("details", {}, h("summary", {}, "Benchmark settings"), benchmarkFields.element));
  parts.push(h("div", { class: "row" }, h("button", { type: "submit" }, "Submit job")));
  form.replaceChildren(...parts);
  form.onsubmit = submit;
  addStep();
  const refresh = () => {
    fillRecordSelect(modelSelect, records.models, false);
    fillRecordSelect(datasetSelect, records.datasets, true);
  };
  refresh();
  onRecordsChanged(refresh);
}
