// Renders /api/v1/openapi.json as a page: operations by tag, their parameters, bodies and answers,
// then the schemas. No framework, no network beyond this server.
"use strict";

const METHODS = ["get", "head", "options", "post", "put", "patch", "delete"];

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// Text with `code` spans, as the document's descriptions write them.
function prose(tag, text) {
  const e = el(tag, {});
  String(text).split("`").forEach((part, i) => e.append(i % 2 ? el("code", {}, part) : part));
  return e;
}

function refName(ref) {
  return ref.split("/").pop();
}

// A schema as a short type text: a $ref links to the schema below.
function typeOf(schema) {
  if (!schema) return el("span", {}, "any");
  if (schema.$ref) return el("a", { href: "#schema-" + refName(schema.$ref) }, refName(schema.$ref));
  const span = el("span", {});
  for (const key of ["oneOf", "anyOf", "allOf"]) {
    if (schema[key]) {
      schema[key].forEach((s, i) => {
        if (i) span.append(key === "allOf" ? " & " : " | ");
        span.append(typeOf(s));
      });
      return span;
    }
  }
  if (schema.enum) return el("code", {}, schema.enum.map((v) => JSON.stringify(v)).join(" | "));
  let t = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "object";
  if (t.includes("array")) {
    span.append(t.replace("array", "array of "), typeOf(schema.items));
    return span;
  }
  if (schema.format) t += " (" + schema.format + ")";
  span.append(t);
  return span;
}

function schemaTable(schema) {
  const props = schema && schema.properties;
  if (!props) return el("div", {}, typeOf(schema));
  const required = new Set(schema.required || []);
  const table = el("table", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "about")));
  for (const [name, s] of Object.entries(props)) {
    table.append(
      el("tr", {},
        el("td", {}, el("code", {}, name + (required.has(name) ? "" : "?"))),
        el("td", {}, typeOf(s)),
        prose("td", s.description || "")));
  }
  return table;
}

function operation(method, path, op) {
  const sec = el("section", { class: "op", id: op.operationId || method + path });
  const secured = !(op.security && op.security.some((r) => Object.keys(r).length === 0));
  sec.append(el("h3", {},
    el("span", { class: "method " + method }, method), el("code", {}, path),
    secured ? el("span", { class: "lock" }, "bearer token") : el("span", { class: "lock" }, "no token")));
  if (op.summary) {
    const summary = prose("p", op.summary);
    summary.className = "summary";
    sec.append(summary);
  }
  if (op.description) sec.append(prose("p", op.description));
  if (op.parameters && op.parameters.length) {
    const table = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "type"), el("th", {}, "about")));
    for (const p of op.parameters) {
      table.append(el("tr", {},
        el("td", {}, el("code", {}, p.name + (p.required ? "" : "?"))),
        el("td", {}, p.in), el("td", {}, typeOf(p.schema)), prose("td", p.description || "")));
    }
    sec.append(el("h4", {}, "Parameters"), table);
  }
  if (op.requestBody) {
    sec.append(el("h4", {}, "Request body"));
    if (op.requestBody.description) sec.append(el("p", {}, op.requestBody.description));
    for (const [type, c] of Object.entries(op.requestBody.content || {})) {
      sec.append(el("p", {}, el("code", {}, type)), schemaTable(c.schema));
    }
  }
  const table = el("table", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "meaning"), el("th", {}, "body")));
  for (const [status, r] of Object.entries(op.responses || {})) {
    const body = el("td", {});
    for (const [type, c] of Object.entries(r.content || {})) {
      body.append(el("code", {}, type), " ", typeOf(c.schema), el("br"));
    }
    const headers = Object.keys(r.headers || {});
    if (headers.length) body.append("headers: " + headers.join(", "));
    table.append(el("tr", {}, el("td", {}, status), prose("td", r.description || ""), body));
  }
  sec.append(el("h4", {}, "Answers"), table);
  return sec;
}

function render(doc) {
  const main = document.getElementById("api");
  const toc = document.getElementById("toc");
  main.replaceChildren();
  if (doc.info && doc.info.description) main.append(prose("p", doc.info.description));
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(method, path, op));
    }
  }
  for (const [tag, sections] of byTag) {
    toc.append(el("a", { href: "#tag-" + tag }, tag));
    main.append(el("h2", { id: "tag-" + tag }, tag), ...sections);
  }
  const schemas = (doc.components && doc.components.schemas) || {};
  toc.append(el("a", { href: "#schemas" }, "schemas"));
  main.append(el("h2", { id: "schemas" }, "Schemas"));
  for (const [name, s] of Object.entries(schemas)) {
    main.append(el("section", { class: "op", id: "schema-" + name },
      el("h3", {}, name), s.description ? prose("p", s.description) : "", schemaTable(s)));
  }
}

fetch("/api/v1/openapi.json")
  .then((r) => (r.ok ? r.json() : Promise.reject(new Error(r.status + " " + r.statusText))))
  .then(render)
  .catch((e) => {
    document.getElementById("api").replaceChildren(el("p", {}, "The document could not be read: " + e.message));
  });
