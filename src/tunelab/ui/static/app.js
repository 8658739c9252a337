// The tunelab dashboard: plain JavaScript, no library, no build step.
// The API key lives in sessionStorage (this tab only) and travels as a bearer header on every
// fetch; server-sent events are read from a fetch stream because EventSource cannot send headers.
"use strict";

const KEY_STORE = "tunelab.key";
const COLORS = ["#1f6feb", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#0b7285", "#5c940d", "#a61e4d"];
const state = { overview: null, runs: [], liveStream: null, chosen: new Set() };

// ------------------------------------------------------------------ helpers
const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return node;
}

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(digits);
  return String(value);
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 90) return `${Math.round(seconds)} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 129600) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

function say(text, isError = false) {
  const node = $("#status");
  node.textContent = text;
  node.classList.toggle("error", isError);
}

function table(head, rows, caption) {
  return el("table", {},
    caption ? el("caption", { text: caption }) : [],
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c instanceof Node ? c : fmt(c)))))));
}

// ------------------------------------------------------------------ the server
class Unauthorized extends Error {}

function key() { return sessionStorage.getItem(KEY_STORE) || ""; }

async function call(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (key()) headers.Authorization = `Bearer ${key()}`;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) throw new Unauthorized("the API key was not accepted");
  return response;
}

async function json(path, options = {}) {
  const response = await call(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) || `${path}: HTTP ${response.status}`);
  return body;
}

// Server-sent events from a fetch response: calls onEvent(name, data) per event.
async function readEvents(response, onEvent, signal) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  while (!(signal && signal.aborted)) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, data.join("\n"));
    }
  }
}

// ------------------------------------------------------------------ login
function showLogin(message) {
  sessionStorage.removeItem(KEY_STORE);
  stopLive();
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#login-key").value = "";
  $("#login-key").focus();
}

async function enter() {
  state.overview = await json("/ui/api/overview");
  $("#login").hidden = true;
  $("#app").hidden = false;
  $("#server-facts").textContent = `base: ${state.overview.base_model}`;
  route();
}

async function start() {
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("#login-key").value.trim());
    try { await enter(); } catch (err) { showLogin(err instanceof Unauthorized ? "That key was not accepted." : err.message); }
  });
  $("#logout").addEventListener("click", () => showLogin("Key forgotten."));
  window.addEventListener("hashchange", route);
  setUpPages();
  try { await enter(); } catch (err) { showLogin(key() && err instanceof Unauthorized ? "That key was not accepted." : ""); }
}

// Every page's work goes through here, so a refused key anywhere leads back to the login.
async function guarded(work) {
  try { await work(); } catch (err) {
    if (err instanceof Unauthorized) showLogin("The API key was not accepted.");
    else if (err.name !== "AbortError") say(err.message, true);
  }
}

// ------------------------------------------------------------------ pages
function route() {
  if ($("#app").hidden) return;
  stopLive();
  say("");
  const [page, arg] = (location.hash.replace(/^#\//, "") || "runs").split("/");
  const name = { runs: "runs", run: "run", compare: "compare", data: "data", new: "new", play: "play" }[page] || "runs";
  document.querySelectorAll(".page").forEach((p) => { p.hidden = p.id !== `page-${name}`; });
  document.querySelectorAll("nav a").forEach((a) => {
    if (a.dataset.page === name) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  const show = { runs: showRuns, run: () => showRun(decodeURIComponent(arg || "")), compare: showCompare,
    data: () => {}, new: showNewJob, play: showPlayground }[name];
  guarded(show);
}

function setUpPages() {
  $("#compare-selected").addEventListener("click", () => { location.hash = "#/compare"; });
  $("#compare-draw").addEventListener("click", () => guarded(drawCompare));
  $("#data-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(checkData); });
  $("#new-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(launchJob); });
  $("#play-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(sendPrompt); });
  for (const side of ["a", "b"]) {
    $(`#answer-${side} .votes`).addEventListener("click", (e) => {
      const button = e.target.closest("button");
      if (button) guarded(() => vote(side, button.dataset.vote));
    });
  }
}

// ------------------------------------------------------------------ runs list
async function loadRuns() {
  const body = await json("/ui/api/runs");
  state.runs = body.data;
  return body;
}

async function showRuns() {
  const body = await loadRuns();
  $("#runs-where").textContent = `Runs in ${body.runs_dir}, newest first.`;
  const box = $("#runs-table");
  box.replaceChildren();
  if (!state.runs.length) {
    box.append(el("p", { class: "note", text: `No runs in ${body.runs_dir} yet. Train one with tunelab train, or launch a job.` }));
  } else {
    const rows = state.runs.map((r) => [
      el("input", { type: "checkbox", "aria-label": `Select ${r.name} to compare`, checked: state.chosen.has(r.name),
        onchange: (e) => { e.target.checked ? state.chosen.add(r.name) : state.chosen.delete(r.name); } }),
      el("a", { href: `#/run/${encodeURIComponent(r.name)}`, text: r.name }),
      el("span", { class: `badge ${r.status}`, text: r.status }),
      r.stage, r.method, r.base, r.best_val_loss, r.train_loss, r.steps,
      Object.entries(r.metrics).map(([k, v]) => `${k} ${fmt(v, 3)}`).join(", ") || (r.evaluated ? "" : "not evaluated"),
      age(r.age_seconds)]);
    box.append(table(["", "run", "status", "stage", "method", "base", "best val loss", "train loss", "steps",
      "key metrics", "changed"], rows));
  }
  await showJobs();
}

async function showJobs() {
  const block = $("#jobs-block");
  block.hidden = !state.overview.jobs_api;
  if (block.hidden) return;
  const jobs = (await json("/v1/fine_tuning/jobs?limit=20")).data || [];
  $("#jobs-table").replaceChildren(jobs.length
    ? table(["job", "status", "model", "fine-tuned model", "created"], jobs.map((j) => [
      j.id, el("span", { class: `badge ${j.status}`, text: j.status }), j.model, j.fine_tuned_model,
      new Date(j.created_at * 1000).toLocaleString()]))
    : el("p", { class: "note", text: "No jobs yet." }));
}

// ------------------------------------------------------------------ loss charts
// A line chart in inline SVG: series [{name, color, points: [[x, y], ...]}].
function lineChart(figure, series, { xLabel = "step", yLabel = "loss", caption = "" } = {}) {
  const W = 640, H = 300, L = 56, R = 16, T = 16, B = 40;
  const all = series.flatMap((s) => s.points);
  figure.replaceChildren();
  if (!all.length) {
    figure.append(el("p", { class: "note", text: "No loss logged yet." }));
    return;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad; y1 += pad;
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "plot",
    "aria-label": `${yLabel} by ${xLabel}: ${series.map((s) => `${s.name}, ${s.points.length} points`).join("; ")}` });
  svg.append(svgEl("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fbfcfe", stroke: "#c9d1dc" }));
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4, x = x0 + ((x1 - x0) * i) / 4;
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: py(y), y2: py(y), stroke: "#e6eaf0" }));
    const yt = svgEl("text", { x: L - 6, y: py(y) + 4, "text-anchor": "end", class: "tick" });
    yt.textContent = y.toPrecision(3);
    svg.append(yt);
    if (i && Math.round(x) === Math.round(x0 + ((x1 - x0) * (i - 1)) / 4)) continue;  // steps are whole numbers
    const xt = svgEl("text", { x: px(Math.round(x)), y: H - B + 16, "text-anchor": "middle", class: "tick" });
    xt.textContent = Math.round(x);
    svg.append(xt);
  }
  const xl = svgEl("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "axis" });
  xl.textContent = xLabel;
  svg.append(xl);
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`).join("");
    svg.append(svgEl("path", { d, fill: "none", stroke: s.color, "stroke-width": 2, class: "series" }));
    for (const p of s.points.length <= 60 ? s.points : []) {
      svg.append(svgEl("circle", { cx: px(p[0]), cy: py(p[1]), r: 2.5, fill: s.color }));
    }
  }
  const legend = el("ul", { class: "legend" }, series.map((s) =>
    el("li", {}, el("span", { class: "swatch", "data-color": s.color }), `${s.name} (${s.points.length})`)));
  legend.querySelectorAll(".swatch").forEach((n) => { n.style.background = n.dataset.color; });
  figure.append(svg, legend, caption ? el("figcaption", { text: caption }) : []);
}

function curve(rows, key) {
  return rows.filter((m) => typeof m[key] === "number" && Number.isFinite(m[key])).map((m) => [m.step, m[key]]);
}

// ------------------------------------------------------------------ one run
function stopLive() {
  if (state.liveStream) state.liveStream.abort();
  state.liveStream = null;
  const badge = $("#run-live");
  if (badge) badge.hidden = true;
}

async function showRun(name) {
  const run = await json(`/ui/api/runs/${encodeURIComponent(name)}`);
  $("#run-title").textContent = `Run ${run.name}`;
  const rows = run.metrics_rows.slice();
  const draw = () => {
    showRunFacts(run, rows);
    lineChart($("#run-chart"), [
      { name: "train loss", color: COLORS[0], points: curve(rows, "loss") },
      { name: "validation loss", color: COLORS[1], points: curve(rows, "eval_loss") }],
    { caption: `${rows.length} logged steps from metrics.jsonl` });
  };
  draw();
  showEvaluation(run);
  showDataCard(run.data_card);
  if (run.status === "running") await followRun(run.name, rows, draw);
}

// The facts at the top; while a run trains, steps and losses follow the rows streamed in.
function showRunFacts(run, rows) {
  const train = curve(rows, "loss"), val = curve(rows, "eval_loss");
  const live = run.status === "running";
  const facts = [["status", run.status], ["stage", run.stage], ["method", run.method], ["base model", run.base],
    ["steps", live && rows.length ? rows[rows.length - 1].step : run.steps],
    ["best validation loss", live && val.length ? Math.min(...val.map((p) => p[1])) : run.best_val_loss],
    ["final train loss", live && train.length ? train[train.length - 1][1] : run.train_loss],
    ["trainable", run.summary.trainable ? `${fmt(run.summary.trainable.percent, 3)} %` : null],
    ["train seconds", run.summary.train_seconds], ["changed", age(run.age_seconds)]];
  $("#run-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: fmt(v) })]));
}

async function followRun(name, rows, draw) {
  const control = new AbortController();
  state.liveStream = control;
  $("#run-live").hidden = false;
  const response = await call(`/ui/api/runs/${encodeURIComponent(name)}/metrics?after=${rows.length}`,
    { signal: control.signal });
  await readEvents(response, (event, data) => {
    if (event === "reset") rows.length = 0;
    const body = JSON.parse(data);
    if (event === "message") { rows.push(...body.rows); draw(); }
    if (event === "end") {
      $("#run-live").hidden = true;
      say(`Training ${body.status}.`);
      guarded(() => showRun(name));  // run.json is written now: the final numbers
    }
  }, control.signal);
}

function showEvaluation(run) {
  const box = $("#run-eval");
  box.replaceChildren();
  if (!run.eval) {
    box.append(el("p", { class: "note empty-eval" },
      "No evaluation yet. Compare this run with its base model: ",
      el("code", { text: `tunelab eval ${state.overview.runs_dir}/${run.name} --data YOUR_TEST.jsonl` })));
    return;
  }
  const ev = run.eval, flags = [];
  if (ev.overfitting) flags.push([ev.overfitting.flag ? "warn" : "ok", ev.overfitting.flag ? "overfitting" : "no overfitting", ev.overfitting.reason]);
  if (ev.forgetting) {
    const drop = ev.forgetting.delta.qa_accuracy_drop;
    flags.push([drop > 0.05 ? "warn" : "ok", `general QA ${drop > 0 ? "drop" : "change"} ${fmt(drop, 3)}`,
      `prose perplexity × ${fmt(ev.forgetting.delta.prose_perplexity_ratio, 3)}`]);
  }
  if (ev.bias) flags.push([ev.bias.amplified ? "warn" : "ok", ev.bias.amplified ? "bias amplified" : "bias not amplified",
    Object.keys(ev.bias.axes || {}).join(", ")]);
  box.append(el("ul", { class: "flags" }, flags.map(([kind, label, why]) =>
    el("li", { class: `badge ${kind}`, title: why }, label))));
  for (const section of run.report || []) {
    if (section.title === "Run" || section.title === "Data") continue;  // shown above and below
    box.append(el("h3", { text: section.title }));
    if (section.text) box.append(el("p", { text: section.text.replace(/\*\*/g, "") }));
    else if (section.title.startsWith("Sample")) box.append(table(["", "text"], section.rows));  // no header row
    else box.append(table(section.rows[0], section.rows.slice(1)));
  }
}

function showDataCard(card) {
  const box = $("#run-card");
  if (!card) { box.replaceChildren(el("p", { class: "note", text: "No data card in this run." })); return; }
  const splits = Object.entries(card.splits || {}).map(([name, s]) => [name, s.rows, s.tokens, s.target_tokens, s.truncated]);
  const extra = Object.entries(card).filter(([k, v]) => k !== "splits" && (typeof v !== "object" || v === null))
    .map(([k, v]) => [k, v]);
  box.replaceChildren(table(["split", "rows", "tokens", "target tokens", "truncated"], splits),
    extra.length ? table(["field", "value"], extra) : []);
}

// ------------------------------------------------------------------ compare
async function showCompare() {
  if (!state.runs.length) await loadRuns();
  const box = $("#compare-choices");
  box.replaceChildren(...state.runs.map((r, i) => el("label", { class: "choice" },
    el("input", { type: "checkbox", value: r.name, id: `cmp-${i}`, checked: state.chosen.has(r.name),
      onchange: (e) => { e.target.checked ? state.chosen.add(r.name) : state.chosen.delete(r.name); } }),
    ` ${r.name}`)));
  if (!state.runs.length) box.append(el("p", { class: "note", text: "No runs to compare yet." }));
  if (state.chosen.size) await drawCompare();
}

async function drawCompare() {
  const names = state.runs.map((r) => r.name).filter((n) => state.chosen.has(n));
  if (!names.length) { say("Choose at least one run.", true); return; }
  const key = $("#compare-series").value;
  const runs = await Promise.all(names.map((n) => json(`/ui/api/runs/${encodeURIComponent(n)}`)));
  lineChart($("#compare-chart"), runs.map((r, i) => ({ name: r.name, color: COLORS[i % COLORS.length],
    points: curve(r.metrics_rows, key) })), { yLabel: key === "loss" ? "train loss" : "validation loss" });
  $("#compare-table").replaceChildren(table(["run", "method", "stage", "best val loss", "train loss", "steps", "key metrics"],
    runs.map((r) => [r.name, r.method, r.stage, r.best_val_loss, r.train_loss, r.steps,
      Object.entries(r.metrics).map(([k, v]) => `${k} ${fmt(v, 3)}`).join(", ") || "not evaluated"])));
}

// ------------------------------------------------------------------ data check
async function checkData() {
  const file = $("#data-file").files[0];
  if (!file) { say("Choose a file first.", true); return; }
  const params = new URLSearchParams({ filename: file.name });
  if ($("#data-max-length").value) params.set("max_length", $("#data-max-length").value);
  say(`Checking ${file.name}…`);
  const report = await json(`/ui/api/data/check?${params}`, { method: "POST", body: file,
    headers: { "Content-Type": "application/octet-stream" } });
  say(`${report.path}: ${report.errors.length} errors, ${report.warnings.length} warnings, ${report.findings.length} findings.`);
  renderReport(report);
}

function renderReport(r) {
  const box = $("#data-report");
  const verdict = r.errors.length ? ["warn", `${r.errors.length} line(s) with errors`] : ["ok", "no format errors"];
  const parts = [el("h2", { text: r.path }),
    el("p", {}, el("span", { class: `badge ${verdict[0]}`, text: verdict[1] }),
      ` ${r.rows} valid rows, format ${r.format || "unknown"}.`)];
  if (r.errors.length) parts.push(table(["line", "kind", "message"], r.errors.map((f) => [f.line, f.kind, f.message]), "Errors"));
  if (r.warnings.length) parts.push(table(["line", "kind", "message"], r.warnings.map((f) => [f.line, f.kind, f.message]), "Warnings"));
  if (r.findings.length) {
    parts.push(table(["kind", "lines", "what", "fix"], r.findings.map((f) =>
      [f.kind, f.lines.slice(0, 12).join(", ") + (f.lines.length > 12 ? ` … (${f.lines.length})` : ""), f.message, f.fix]),
    "Findings (duplicates, conflicts, personal data, outliers)"));
  }
  if (r.guidance) parts.push(el("p", { class: "note", text: `Size: ${r.guidance.verdict}` }));
  if (r.tokens) {
    parts.push(el("h3", { text: "Token lengths" }), el("p", { text:
      `total ${r.tokens.total}, mean ${r.tokens.mean}, p95 ${r.tokens.p95}, max ${r.tokens.max}` +
      (r.max_length ? `; ${r.over_length} rows over ${r.max_length}` : "") }));
    parts.push(histogramChart(r.histogram));
  }
  box.replaceChildren(...parts);
}

function histogramChart(h) {
  const figure = el("figure", { class: "chart" });
  if (!h || !h.counts.length) return figure;
  const W = 640, H = 220, L = 44, B = 34, T = 10, n = h.counts.length, top = Math.max(...h.counts);
  const bw = (W - L - 10) / n;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "plot",
    "aria-label": `Histogram of token lengths from ${h.edges[0]} to ${h.edges[n]} tokens, ${n} bins` });
  h.counts.forEach((c, i) => {
    const height = ((H - T - B) * c) / top;
    const bar = svgEl("rect", { x: L + i * bw + 1, y: H - B - height, width: Math.max(1, bw - 2), height, fill: COLORS[0] });
    const title = svgEl("title");
    title.textContent = `${h.edges[i]}–${h.edges[i + 1] - 1} tokens: ${c} rows`;
    bar.append(title);
    svg.append(bar);
  });
  for (const i of [0, Math.floor(n / 2), n]) {
    const t = svgEl("text", { x: L + i * bw, y: H - B + 16, "text-anchor": "middle", class: "tick" });
    t.textContent = h.edges[i];
    svg.append(t);
  }
  const ymax = svgEl("text", { x: L - 6, y: T + 10, "text-anchor": "end", class: "tick" });
  ymax.textContent = top;
  const xl = svgEl("text", { x: W / 2, y: H - 4, "text-anchor": "middle", class: "axis" });
  xl.textContent = "tokens per row";
  svg.append(ymax, xl);
  figure.append(svg);
  return figure;
}

// ------------------------------------------------------------------ new job
function showNewJob() {
  const available = state.overview.jobs_api;
  $("#new-unavailable").hidden = available;
  $("#new-submit").disabled = !available;
  if (!$("#new-model").value) $("#new-model").value = state.overview.base_model;
}

function hyper(id, integer) {
  const raw = $(id).value.trim();
  if (!raw || raw === "auto") return "auto";
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new Error(`${$(`label[for=${id.slice(1)}]`).textContent}: expected ${integer ? "a whole number" : "a number"} or auto`);
  }
  return value;
}

async function upload(file) {
  const form = new FormData();
  form.append("purpose", "fine-tune");
  form.append("file", file, file.name);
  return json("/v1/files", { method: "POST", body: form });
}

async function launchJob() {
  const hyperparameters = { n_epochs: hyper("#new-epochs", true), learning_rate_multiplier: hyper("#new-lr", false),
    batch_size: hyper("#new-batch", true) };
  const method = $("#new-method").value;
  say("Uploading…");
  const training = await upload($("#new-train").files[0]);
  const valFile = $("#new-val").files[0];
  const validation = valFile ? await upload(valFile) : null;
  const body = { model: $("#new-model").value.trim(), training_file: training.id,
    method: { type: method, [method]: { hyperparameters } } };
  if (validation) body.validation_file = validation.id;
  if ($("#new-suffix").value.trim()) body.suffix = $("#new-suffix").value.trim();
  const job = await json("/v1/fine_tuning/jobs", { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" } });
  say(`Job ${job.id} created.`);
  await followJob(job.id);
}

// A job's progress comes from its events (the jobs API keeps each key's jobs to itself), polled:
// the newest pages are read until an event already seen, so a long job is read once.
async function newEvents(id, seen) {
  const fresh = [];
  let after = null;
  for (;;) {
    const page = await json(`/v1/fine_tuning/jobs/${encodeURIComponent(id)}/events?limit=100${after ? `&after=${after}` : ""}`);
    const unseen = (page.data || []).filter((e) => !seen.has(e.id));
    unseen.forEach((e) => seen.add(e.id));
    fresh.push(...unseen);
    if (!page.has_more || unseen.length < (page.data || []).length || !page.data.length) return fresh;
    after = page.data[page.data.length - 1].id;
  }
}

async function followJob(id) {
  const box = $("#new-job");
  const done = new Set(["succeeded", "failed", "cancelled"]);
  const seen = new Set(), events = [];
  const chart = el("figure", { class: "chart", id: "job-chart" });
  for (;;) {
    if (location.hash !== "#/new") return;
    const job = await json(`/v1/fine_tuning/jobs/${encodeURIComponent(id)}`);
    // pages come newest first and many events share a second: oldest first, then a stable sort
    events.push(...(await newEvents(id, seen)).reverse());
    events.sort((a, b) => a.created_at - b.created_at);
    const points = (key) => events.filter((e) => e.type === "metrics" && e.data && typeof e.data[key] === "number")
      .map((e) => [e.data.step, e.data[key]]).sort((a, b) => a[0] - b[0]);
    lineChart(chart, [{ name: "train loss", color: COLORS[0], points: points("train_loss") },
      { name: "validation loss", color: COLORS[1], points: points("valid_loss") }], { caption: "from the job's events" });
    box.replaceChildren(el("h2", {}, `Job ${job.id} `, el("span", { class: `badge ${job.status}`, id: "job-status", text: job.status })),
      job.fine_tuned_model ? el("p", {}, "Model: ", el("code", { text: job.fine_tuned_model })) : [],
      job.error && job.error.message ? el("p", { class: "error", text: job.error.message }) : [],
      chart,
      table(["time", "level", "message"], events.slice(-8).reverse().map((e) =>
        [new Date(e.created_at * 1000).toLocaleTimeString(), e.level, e.message]), "Latest events"));
    if (done.has(job.status)) return;
    await new Promise((resolve) => setTimeout(resolve, 1500));
  }
}

// ------------------------------------------------------------------ playground
const answers = { a: null, b: null };

async function showPlayground() {
  const models = (await json("/v1/models")).data.map((m) => m.id);
  for (const [side, pick] of [["a", models[0]], ["b", models.find((m) => m.startsWith("ft:")) || models[0]]]) {
    const select = $(`#play-model-${side}`);
    const current = select.value;
    select.replaceChildren(...models.map((m) => el("option", { value: m, text: m })));
    select.value = models.includes(current) ? current : pick;
  }
  if (!state.overview.feedback) $("#play-feedback").textContent = "Feedback is off: this server keeps no request log.";
}

async function streamAnswer(side, model, prompt, maxTokens) {
  const box = $(`#answer-${side}`);
  const text = $(".text", box);
  $("h2", box).textContent = `${side.toUpperCase()}: ${model}`;
  text.textContent = "";
  answers[side] = { model, id: null, text: "", done: false };
  const response = await call("/v1/chat/completions", { method: "POST", headers: { "Content-Type": "application/json" },
    // greedy: the two sides differ by their models only, not by sampling noise
    body: JSON.stringify({ model, stream: true, max_tokens: maxTokens, temperature: 0,
      messages: [{ role: "user", content: prompt }] }) });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(`${model}: ${(body.error && body.error.message) || `HTTP ${response.status}`}`);
  }
  await readEvents(response, (_event, data) => {
    if (data === "[DONE]") return;
    const chunk = JSON.parse(data);
    if (chunk.error) throw new Error(`${model}: ${chunk.error.message}`);
    answers[side].id = chunk.id || answers[side].id;
    const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
    if (delta && delta.content) { answers[side].text += delta.content; text.textContent = answers[side].text; }
  });
  answers[side].done = true;
  box.classList.add("finished");
}

async function sendPrompt() {
  const prompt = $("#play-prompt").value.trim();
  if (!prompt) { say("Write a prompt first.", true); return; }
  const maxTokens = Number($("#play-max-tokens").value) || 64;
  document.querySelectorAll(".answer").forEach((b) => b.classList.remove("finished"));
  document.querySelectorAll(".votes").forEach((v) => { v.hidden = true; });
  $("#play-feedback").textContent = "";
  $("#play-send").disabled = true;
  say("Streaming both answers…");
  try {
    await Promise.all([streamAnswer("a", $("#play-model-a").value, prompt, maxTokens),
      streamAnswer("b", $("#play-model-b").value, prompt, maxTokens)]);
    say("Both answers are in.");
    if (state.overview.feedback) document.querySelectorAll(".votes").forEach((v) => { v.hidden = false; });
  } finally {
    $("#play-send").disabled = false;
  }
}

// Thumbs are a rating on that answer's request; "this one is better" stores it as the preferred
// output of the other request, which `tunelab feedback export` turns into a preference pair.
async function vote(side, kind) {
  const mine = answers[side], other = answers[side === "a" ? "b" : "a"];
  if (!mine || !mine.id) return;
  const send = (body) => json("/v1/feedback", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) });
  if (kind === "better") {
    await send({ request_id: other.id, preferred_output: mine.text, comment: `preferred ${mine.model} over ${other.model}` });
    await send({ request_id: mine.id, rating: 1 });
  } else {
    await send({ request_id: mine.id, rating: kind === "up" ? 1 : -1 });
  }
  const said = kind === "better" ? `${side.toUpperCase()} marked better` : `${kind === "up" ? "good" : "bad"} on ${side.toUpperCase()}`;
  $("#play-feedback").textContent = `Stored: ${said}.` +
    (state.overview.feedback_exportable ? "" : " (Prompts are not logged on this server, so `tunelab feedback export` cannot turn it into a pair; start it with --log-content.)");
}

document.addEventListener("DOMContentLoaded", start);
