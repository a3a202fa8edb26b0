#!/usr/bin/env node
// Validates Grafana dashboards against a JSON Schema generated from the
// TypeScript `Dashboard` type of npm @grafana/schema, then checks this
// project's dashboard conventions, which the schema cannot express.
//
//   node validate.mjs --node-modules DIR [--schema-out FILE] dashboards/*.json
//
// DIR is a node_modules holding the exact versions of package.json here
// (scripts/check-dashboards-schema.sh installs them with `npm ci`).
//
// The schema: ts-json-schema-generator reads
// @grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts, the classic
// (schemaVersion-numbered, "v1"/raw) dashboard model that Grafana generates from
// its CUE kind, and emits type `Dashboard` with `additionalProperties: false`
// on every interface: an unknown or misspelt key anywhere in the dashboard, a
// panel, its gridPos, fieldConfig, thresholds, mappings, links or variables is
// an error, as is a wrong type or a missing required key. Panel `options`,
// `fieldConfig.defaults.custom` and `targets[]` stay free-form in the TS type
// (they belong to panel and datasource plugins); the conventions below cover
// the targets.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const TS_FILE = "@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts";
const DEFAULTS_FILE = "@grafana/schema/dist/cjs/raw/dashboard/x/types.gen.cjs";
const TYPE = "Dashboard";
const DATASOURCE = { type: "prometheus", uid: "${datasource}" };

function usage(msg) {
  console.error(`validate.mjs: ${msg}`);
  console.error("usage: node validate.mjs --node-modules DIR [--schema-out FILE] DASHBOARD.json...");
  process.exit(2);
}

const args = process.argv.slice(2);
let nodeModules = null;
let schemaOut = null;
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--node-modules") nodeModules = args[++i];
  else if (args[i] === "--schema-out") schemaOut = args[++i];
  else if (args[i].startsWith("--")) usage(`unknown option ${args[i]}`);
  else files.push(args[i]);
}
if (!nodeModules) usage("--node-modules is required");
if (files.length === 0) usage("no dashboard files given");
nodeModules = path.resolve(nodeModules);
const require = createRequire(path.join(nodeModules, "noop.js"));

// ------------------------------------------------------------------ schema
const tsFile = path.join(nodeModules, TS_FILE);
if (!fs.existsSync(tsFile)) usage(`${tsFile} not found: is @grafana/schema installed in ${nodeModules}?`);
const { createGenerator } = require("ts-json-schema-generator");
const schema = createGenerator({
  path: tsFile,
  type: TYPE,
  skipTypeCheck: true,
  additionalProperties: false,
  expose: "export",
  topRef: true,
  jsDoc: "basic",
}).createSchema(TYPE);
const defs = schema.definitions || {};
// Fail loudly should a future @grafana/schema loosen the type so far that the
// schema would no longer check panels.
for (const [name, required] of [["Dashboard", "schemaVersion"], ["Panel", "type"], ["RowPanel", "type"], ["GridPos", "h"]]) {
  const d = defs[name];
  if (!d || d.additionalProperties !== false || !(d.required || []).includes(required)) {
    console.error(`validate.mjs: generated schema has no strict '${name}' definition: ${TS_FILE} changed?`);
    process.exit(2);
  }
}
if (schemaOut) {
  fs.mkdirSync(path.dirname(path.resolve(schemaOut)), { recursive: true });
  fs.writeFileSync(schemaOut, JSON.stringify(schema, null, 2) + "\n");
}
const currentSchemaVersion = require(path.join(nodeModules, DEFAULTS_FILE)).defaultDashboard.schemaVersion;
const grafanaSchemaVersion = JSON.parse(
  fs.readFileSync(path.join(nodeModules, "@grafana/schema/package.json"), "utf8"),
).version;

const Ajv = require("ajv");
const ajv = new Ajv({ allErrors: true, strict: false, verbose: true });
const validate = ajv.compile(schema);

// ------------------------------------------------------------- conventions
function sameDs(ds) {
  return ds && typeof ds === "object" && ds.type === DATASOURCE.type && ds.uid === DATASOURCE.uid &&
    Object.keys(ds).length === 2;
}

function conventions(d) {
  const out = [];
  if (typeof d.uid !== "string" || !/^[A-Za-z0-9_-]{1,40}$/.test(d.uid)) out.push("uid: a fixed uid of 1 to 40 letters, digits, '-' or '_' is required");
  if (!d.title) out.push("title: required");
  if (!Array.isArray(d.tags) || d.tags.length === 0) out.push("tags: at least one tag is required");
  if (d.schemaVersion !== currentSchemaVersion) {
    out.push(`schemaVersion: ${d.schemaVersion}, but @grafana/schema ${grafanaSchemaVersion} is at ${currentSchemaVersion}`);
  }
  const vars = d.templating?.list || [];
  const dsVar = vars.find((v) => v.name === "datasource");
  if (!dsVar || dsVar.type !== "datasource" || dsVar.query !== "prometheus") {
    out.push("templating: a variable 'datasource' of type datasource with query 'prometheus' is required");
  }
  for (const v of vars) {
    if (v.type === "query" && !sameDs(v.datasource)) out.push(`variable ${v.name}: datasource must be ${JSON.stringify(DATASOURCE)}`);
  }
  // No hard-coded datasource anywhere.
  (function walk(node, where) {
    if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${where}[${i}]`));
    if (!node || typeof node !== "object") return;
    for (const [k, v] of Object.entries(node)) {
      if (k === "datasource" && v !== null) {
        const uid = typeof v === "string" ? v : v.uid;
        if (typeof uid === "string" && !uid.startsWith("$")) out.push(`${where}.datasource: hard-coded datasource ${JSON.stringify(v)}`);
      }
      walk(v, `${where}.${k}`);
    }
  })(d, "");

  const ids = new Map();
  const boxes = [];
  const all = [];
  for (const p of d.panels || []) {
    all.push(p);
    for (const c of p.panels || []) all.push(c);
  }
  for (const p of all) {
    const where = `panel ${p.id} '${p.title ?? ""}'`;
    if (!Number.isInteger(p.id)) out.push(`${where}: an integer id is required (stable ids)`);
    else if (ids.has(p.id)) out.push(`${where}: id ${p.id} is also used by '${ids.get(p.id)}'`);
    else ids.set(p.id, p.title ?? "");
    if (!p.gridPos) out.push(`${where}: gridPos is required`);
    else boxes.push([where, p.gridPos]);
    if (p.type === "row") continue;
    if (!p.title) out.push(`${where}: title is required`);
    if (!sameDs(p.datasource)) out.push(`${where}: datasource must be ${JSON.stringify(DATASOURCE)}`);
    if (!p.fieldConfig?.defaults?.unit) out.push(`${where}: fieldConfig.defaults.unit must be set`);
    const targets = p.targets || [];
    if (targets.length === 0 && p.type !== "text") out.push(`${where}: no targets`);
    const refs = new Set();
    for (const t of targets) {
      const tw = `${where} target ${t.refId}`;
      if (!t.refId || refs.has(t.refId)) out.push(`${tw}: a unique refId is required`);
      refs.add(t.refId);
      if (!sameDs(t.datasource)) out.push(`${tw}: datasource must be ${JSON.stringify(DATASOURCE)}`);
      if (typeof t.expr !== "string" || !t.expr.trim()) { out.push(`${tw}: expr is required`); continue; }
      for (const m of t.expr.matchAll(/\b(i?rate)\s*\(/g)) {
        const rest = t.expr.slice(m.index + m[0].length);
        const sel = rest.match(/\[([^\]]*)\]/);
        if (sel && sel[1].trim() !== "$__rate_interval") {
          out.push(`${tw}: ${m[1]}() over [${sel[1]}]: use [$__rate_interval]`);
        }
      }
    }
  }
  // Panels of the same level must not overlap on the grid.
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const [wa, a] = boxes[i];
      const [wb, b] = boxes[j];
      if (a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h) {
        out.push(`${wa} overlaps ${wb} on the grid`);
      }
    }
    const [w, g] = boxes[i];
    if (g.x < 0 || g.w < 1 || g.x + g.w > 24) out.push(`${w}: gridPos outside the 24 columns`);
  }
  return out;
}

// A panel is `Panel | RowPanel` (anyOf): report only the errors of the branch
// its `type` selects, and the anyOf summary only when nothing else explains it.
const ownSchemas = Object.fromEntries(["Panel", "RowPanel"].map((n) => [
  n, new Set([defs[n], ...Object.values(defs[n].properties || {})]),
]));
function relevantErrors(doc, errors) {
  const at = (ptr) => ptr.split("/").slice(1).reduce((n, k) => (n == null ? n : n[k]), doc);
  const kept = errors.filter((e) => {
    const m = e.instancePath.match(/^(\/panels\/\d+(?:\/panels\/\d+)?)(?:\/|$)/);
    if (!m) return true;
    const panel = at(m[1]);
    const isRow = panel && panel.type === "row";
    if (ownSchemas.RowPanel.has(e.parentSchema)) return isRow;
    if (ownSchemas.Panel.has(e.parentSchema)) return !isRow;
    return true;
  });
  return kept.filter((e) => e.keyword !== "anyOf" ||
    !kept.some((o) => o !== e && o.instancePath.startsWith(e.instancePath)));
}

// ------------------------------------------------------------------- run
let passed = 0;
let failed = 0;
for (const file of files) {
  let doc;
  try {
    doc = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    console.log(`FAIL ${file}: not JSON: ${e.message}`);
    failed++;
    continue;
  }
  const problems = [];
  if (!validate(doc)) {
    for (const e of relevantErrors(doc, validate.errors)) {
      const extra = e.params?.additionalProperty ? ` '${e.params.additionalProperty}'`
        : e.params?.missingProperty ? ` '${e.params.missingProperty}'`
        : e.params?.allowedValues ? ` ${JSON.stringify(e.params.allowedValues)}` : "";
      problems.push(`schema: ${e.instancePath || "/"} ${e.message}${extra}`);
    }
  }
  try {
    problems.push(...conventions(doc).map((p) => `convention: ${p}`));
  } catch (e) {
    problems.push(`convention: not checked, the document is malformed (${e.message})`);
  }
  if (problems.length) {
    failed++;
    console.log(`FAIL ${file}`);
    const unique = [...new Set(problems)];
    for (const p of unique.slice(0, 40)) console.log(`  ${p}`);
    if (unique.length > 40) console.log(`  ... and ${unique.length - 40} more`);
  } else {
    passed++;
    console.log(`ok   ${file}`);
  }
}
console.log(`dashboards (@grafana/schema ${grafanaSchemaVersion}, type ${TYPE}, schemaVersion ${currentSchemaVersion}): ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
