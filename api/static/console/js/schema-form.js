// Form fields from a JSON schema (a pass's config, the benchmark settings, a goal), and the
// values a user changed. Only changed fields are sent: the service fills in every default.

import { h } from "./dom.js";

const SKIPPED = new Set(["op", "method"]);
let counter = 0;

function resolve(schema, root) {
  if (schema && schema.$ref && schema.$ref.startsWith("#/$defs/")) {
    return (root.$defs || {})[schema.$ref.slice("#/$defs/".length)] || {};
  }
  return schema || {};
}

// An optional field is anyOf [X, null]: the form shows X, and an empty input means "left out".
function plain(schema, root) {
  const resolved = resolve(schema, root);
  const branches = resolved.anyOf || resolved.oneOf;
  if (Array.isArray(branches)) {
    const concrete = branches.filter((b) => b.type !== "null");
    if (concrete.length === 1) return { ...resolve(concrete[0], root), nullable: true };
  }
  return resolved;
}

function kindOf(schema) {
  if (Array.isArray(schema.enum)) return "enum";
  if (schema.type === "boolean") return "boolean";
  if (schema.type === "integer" || schema.type === "number") return "number";
  if (schema.type === "string") return "string";
  if (schema.type === "array" && ["string", "number", "integer"].includes((schema.items || {}).type)) return "list";
  return "json";
}

function initialText(kind, value) {
  if (value === undefined || value === null) return "";
  if (kind === "list") return Array.isArray(value) ? value.join(", ") : "";
  if (kind === "json") return JSON.stringify(value);
  return String(value);
}

function input(kind, schema, id, initial, describedBy) {
  const common = { id, "aria-describedby": describedBy };
  if (kind === "boolean") return h("input", { ...common, type: "checkbox", checked: initial === true });
  if (kind === "enum") {
    const options = schema.enum.map((v) => h("option", { value: JSON.stringify(v), selected: v === initial }, String(v)));
    if (schema.nullable || initial === undefined) options.unshift(h("option", { value: "", selected: initial === undefined || initial === null }, "(default)"));
    return h("select", common, options);
  }
  if (kind === "number") {
    return h("input", { ...common, type: "number", step: schema.type === "integer" ? "1" : "any", min: schema.minimum ?? schema.exclusiveMinimum,
      max: schema.maximum ?? schema.exclusiveMaximum, value: initialText(kind, initial) });
  }
  if (kind === "json") return h("textarea", { ...common, spellcheck: "false" }, initialText(kind, initial));
  return h("input", { ...common, type: "text", value: initialText(kind, initial), maxlength: schema.maxLength });
}

function read(kind, schema, el) {
  if (kind === "boolean") return el.checked;
  const text = el.value.trim();
  if (text === "") return null;
  if (kind === "enum") return JSON.parse(text);
  if (kind === "number") return Number(text);
  if (kind === "list") {
    const items = text.split(",").map((s) => s.trim()).filter(Boolean);
    return ["number", "integer"].includes(schema.items.type) ? items.map(Number) : items;
  }
  if (kind === "json") return JSON.parse(text);
  return text;
}

// Returns { element, values() }: values() gives the fields whose input differs from what the
// form started with, and throws Error naming the field when one is not valid JSON.
export function schemaFields(schema, { legend, prefix }) {
  const root = schema || {};
  const fields = [];
  const rows = [];
  const required = new Set(root.required || []);
  for (const [name, raw] of Object.entries(root.properties || {})) {
    if (SKIPPED.has(name)) continue;
    const field = plain(raw, root);
    const kind = kindOf(field);
    counter += 1;
    const id = `${prefix}-${name}-${counter}`;
    const hintId = `${id}-hint`;
    const initial = raw.default !== undefined ? raw.default : field.default;
    const el = input(kind, field, id, initial, field.description || raw.description ? hintId : undefined);
    const start = kind === "boolean" ? el.checked : el.value;
    fields.push({ name, kind, field, el, start, needed: required.has(name) });
    const label = h("label", { for: id }, `${raw.title || field.title || name}${required.has(name) ? " (required)" : ""}`);
    const description = raw.description || field.description;
    const hint = description ? h("p", { class: "hint", id: hintId }, kind === "list" ? `${description} (comma-separated)` : description) : null;
    rows.push(h("div", { class: "field" }, label, el, hint));
  }
  const element = rows.length ? h("fieldset", {}, h("legend", {}, legend), rows) : h("p", { class: "hint" }, "No options.");
  return {
    element,
    values() {
      const out = {};
      for (const { name, kind, field, el, start, needed } of fields) {
        const now = kind === "boolean" ? el.checked : el.value;
        if (now === start && !needed) continue;
        try {
          const value = read(kind, field, el);
          if (value !== null) out[name] = value;
        } catch {
          throw new Error(`${name}: not valid JSON`);
        }
      }
      return out;
    },
  };
}
