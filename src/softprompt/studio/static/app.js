// softprompt studio: plain JavaScript, no framework, no network beyond this server.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { info: null, prompts: [], selected: null, upload: null, jobId: null, poll: null, chat: null };
// Requests that change something carry this process's token (from the page the server rendered).
const TOKEN = document.querySelector('meta[name="studio-token"]').content;

// -- helpers -----------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

async function api(path, options = {}) {
  const method = (options.method || "GET").toUpperCase();
  if (method !== "GET" && method !== "HEAD") options = { ...options, headers: { ...(options.headers || {}), "X-Studio-Token": TOKEN } };
  const response = await fetch(path, options);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

const postJSON = (path, body) =>
  api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

async function remove(path, what, errorBox) {
  if (!window.confirm(`Delete ${what}? This cannot be undone.`)) return false;
  $(errorBox).textContent = "";
  try {
    await api(path, { method: "DELETE" });
    return true;
  } catch (e) {
    $(errorBox).textContent = e.message;
    return false;
  }
}

function bytes(n) {
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MB";
  if (n >= 1024) return (n / 1024).toFixed(1) + " KB";
  return n + " B";
}

function duration(s) {
  if (s == null) return "\u2014";
  s = Math.round(s);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
}

const fmt = (x, digits = 4) => (x == null || Number.isNaN(x) ? "\u2014" : Number(x).toFixed(digits));
const pct = (x) => (x == null ? "\u2014" : (100 * x).toFixed(1) + "%");

function showTab(name) {
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.tab === name));
  document.querySelectorAll(".page").forEach((p) => p.classList.toggle("active", p.id === "page-" + name));
  // The chart is sized to its box, which has no size while its tab is hidden.
  if (name === "train") drawChart(state.lastJob ? state.lastJob.loss : [], state.lastJob ? state.lastJob.dev : [], state.lastJob ? state.lastJob.total_steps : 0);
}

// -- prompts -----------------------------------------------------------------------

function devFigure(training) {
  if (!training) return null;
  const key = Object.keys(training).find((k) => k.startsWith("dev_"));
  return key ? training[key] : null;
}

async function loadPrompts() {
  const { data, broken } = await api("/studio/api/prompts");
  state.prompts = data;
  const body = $("#prompt-table tbody");
  body.replaceChildren();
  for (const p of data) {
    const dev = devFigure(p.training);
    const row = el("tr", { class: "selectable", "data-name": p.name, onclick: () => selectPrompt(p.name) },
      el("td", {}, el("b", {}, p.name)),
      el("td", {}, p.task || "\u2014"),
      el("td", {}, (p.labels || []).join(", ") || "\u2014"),
      el("td", {}, p.method),
      el("td", { class: "num" }, p.num_virtual_tokens),
      el("td", { class: "num" }, bytes(p.bytes)),
      el("td", { class: "num" }, dev == null ? "\u2014" : pct(dev)),
      el("td", {}, el("a", { href: `/studio/api/prompts/${encodeURIComponent(p.name)}/download`,
        download: p.name + ".zip", class: "download", onclick: (e) => e.stopPropagation() }, "download")),
      el("td", {}, el("button", { class: "small danger delete", onclick: (e) => { e.stopPropagation(); deletePrompt(p.name); } }, "delete")));
    body.append(row);
  }
  $("#no-prompts").classList.toggle("hidden", data.length > 0 || broken.length > 0);
  $("#broken-prompts").classList.toggle("hidden", !broken.length);
  $("#broken-list").replaceChildren(...broken.map((b) => el("li", { "data-name": b.name }, el("b", {}, b.name), ": " + b.error)));
  const select = $("#inspect-prompt");
  const keep = select.value;
  select.replaceChildren(...data.map((p) => el("option", { value: p.name }, p.name)));
  if (data.some((p) => p.name === keep)) select.value = keep;
  if (!state.selected && data.length) selectPrompt(data[0].name);
  else if (state.selected) selectPrompt(state.selected);
}

async function deletePrompt(name) {
  if (!(await remove(`/studio/api/prompts/${encodeURIComponent(name)}`, `the prompt ${name}`, "#prompt-error"))) return;
  if (state.selected === name) state.selected = null;
  await loadPrompts();
}

function selectPrompt(name) {
  state.selected = name;
  document.querySelectorAll("#prompt-table tbody tr").forEach((r) => r.classList.toggle("selected", r.dataset.name === name));
  $("#try-name").textContent = name;
  newChat();
}

// -- the chat box: a prompt trained on conversations is tried as a conversation ----------------

const isChat = (prompt) => !!prompt && (taskKind(prompt.task) || {}).format === "chat";

function newChat() {
  state.chat = { name: state.selected, soft: [], hard: [] };
  const prompt = state.prompts.find((p) => p.name === state.selected);
  $("#new-chat").classList.toggle("hidden", !isChat(prompt));
  $("#try-text").placeholder = isChat(prompt) ? "Your message" : "Type a text to classify or continue";
  $("#hard-label").textContent = isChat(prompt)
    ? "Hard prompt for the base model beside it (its system message)"
    : "Hard prompt (put before the template; may contain {text})";
  for (const id of ["#soft-result", "#hard-result"]) $(id + " .body").replaceChildren(el("span", { class: "muted" }, "\u2014"));
}

function showChat(target, history, pending) {
  const turns = history.map((m) => el("div", { class: "turn " + m.role }, el("b", {}, m.role + ": "), m.content));
  target.replaceChildren(...turns, ...(pending ? [el("span", { class: "muted" }, pending)] : []));
}

async function baseModelId() {
  if (!state.baseId) state.baseId = (await api("/v1/models")).data.find((m) => !m.parent).id;
  return state.baseId;
}

// The soft prompt answers the conversation as it was trained; beside it the base model without the soft
// prompt, the hard prompt (if typed) as its system message. Each side keeps its own history.
async function tryChat(prompt, text, hardText) {
  if (!state.chat || state.chat.name !== prompt.name) newChat();
  $("#soft-result h3").textContent = `Soft prompt: ${prompt.name} (chat, T=${prompt.num_virtual_tokens})`;
  $("#hard-result h3").textContent = hardText.trim() ? "Base model, the hard prompt as system message" : "Base model, no prompt";
  const ask = async (model, history, system, target) => {
    history.push({ role: "user", content: text });
    showChat(target, history, "running\u2026");
    try {
      const messages = system ? [{ role: "system", content: system }, ...history] : history;
      const out = await postJSON("/v1/chat/completions", { model, messages, max_tokens: 48, temperature: 0 });
      history.push({ role: "assistant", content: out.choices[0].message.content });
      showChat(target, history);
    } catch (e) {
      history.pop();
      showChat(target, history);
      target.append(el("div", { class: "error" }, e.message));
    }
  };
  const base = await baseModelId();
  await Promise.all([
    ask(prompt.name, state.chat.soft, null, $("#soft-result .body")),
    ask(base, state.chat.hard, hardText.trim(), $("#hard-result .body")),
  ]);
  $("#try-text").value = "";
}

function bars(probs) {
  const best = Object.keys(probs).reduce((a, b) => (probs[a] >= probs[b] ? a : b));
  return el("div", {}, ...Object.entries(probs).map(([label, p]) =>
    el("div", { class: "prob" + (label === best ? " top" : "") },
      el("span", { class: "label" }, label),
      el("div", { class: "track" }, el("div", { class: "fill", style: `width:${(100 * p).toFixed(1)}%` })),
      el("span", { class: "value" }, pct(p)))));
}

async function tryPrompts() {
  $("#try-error").textContent = "";
  const prompt = state.prompts.find((p) => p.name === state.selected);
  const text = $("#try-text").value;
  if (!prompt) return void ($("#try-error").textContent = "Choose a prompt in the list first.");
  if (!text.trim()) return void ($("#try-error").textContent = "Type a text to try.");
  if (isChat(prompt)) return tryChat(prompt, text, $("#hard-text").value);
  const soft = $("#soft-result .body"), hard = $("#hard-result .body");
  $("#soft-result h3").textContent = `Soft prompt: ${prompt.name} (T=${prompt.num_virtual_tokens})`;
  soft.replaceChildren(el("span", { class: "muted" }, "running\u2026"));
  hard.replaceChildren(el("span", { class: "muted" }, "running\u2026"));
  const hardText = $("#hard-text").value;
  const softJob = (async () => {
    if (prompt.labels && prompt.labels.length) {
      const out = await postJSON("/v1/classify", { prompt: prompt.name, inputs: [text] });
      soft.replaceChildren(bars(out.results[0].probs));
    } else {
      await streamCompletion(prompt.name, text, soft);
    }
  })().catch((e) => soft.replaceChildren(el("span", { class: "error" }, e.message)));
  const hardJob = postJSON("/studio/api/hard", { prompt: prompt.name, text, hard_prompt: hardText })
    .then((out) => {
      $("#hard-result h3").textContent = hardText.trim() ? "Hard prompt" : "No prompt (template only)";
      const shown = el("div", { class: "muted", title: "what the model reads" }, "template: ", el("code", {}, out.template));
      hard.replaceChildren(out.probs ? bars(out.probs) : el("div", { class: "generated" }, out.text), shown);
    })
    .catch((e) => hard.replaceChildren(el("span", { class: "error" }, e.message)));
  await Promise.all([softJob, hardJob]);
}

// Server-sent events from /v1/completions, appended to `target` as they arrive.
async function streamCompletion(name, text, target) {
  const response = await fetch("/v1/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model: name, prompt: text, max_tokens: 48, stream: true }),
  });
  if (!response.ok) throw new Error((await response.json()).error.message);
  const out = el("div", { class: "generated" });
  target.replaceChildren(out);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, cut).replace(/^data: /, "");
      buffer = buffer.slice(cut + 2);
      if (line === "[DONE]") return;
      const event = JSON.parse(line);
      if (event.error) throw new Error(event.error.message);
      out.textContent += event.choices[0].text;
    }
  }
}

// -- data and settings ---------------------------------------------------------------

async function uploadFile(file) {
  $("#upload-error").textContent = "";
  $("#builtin").value = "";
  if (file.size > state.info.max_upload_bytes) {
    $("#upload-error").textContent = `${file.name} is ${bytes(file.size)}; the limit is ${bytes(state.info.max_upload_bytes)}.`;
    return;
  }
  $("#upload-status").textContent = `uploading ${file.name}\u2026`;
  try {
    const info = await api("/studio/api/uploads?filename=" + encodeURIComponent(file.name), { method: "POST", body: file });
    showUpload(info);
  } catch (e) {
    $("#upload-status").textContent = "";
    $("#upload-error").textContent = e.message;
    $("#data-details").classList.add("hidden");
    state.upload = null;
  }
}

function showUpload(info) {
  state.upload = info;
  $("#upload-status").textContent = info.chat
    ? `${info.name}: ${info.rows.toLocaleString()} conversations, ${bytes(info.bytes)}`
    : `${info.name}: ${info.rows.toLocaleString()} rows, ${info.columns.length} columns, ${bytes(info.bytes)}`;
  // A conversations file trains a chat kind (its rows are whole conversations: no columns to choose).
  if (info.chat && taskKind($("#task").value).format !== "chat") $("#task").value = "chat";
  if (!info.chat && taskKind($("#task").value).format === "chat") $("#task").value = state.info.defaults.task;
  $("#labels-field").classList.toggle("hidden", !taskKind($("#task").value).has_labels);
  $("#column-choice").classList.toggle("hidden", !!info.chat);
  for (const id of ["#text-column", "#label-column"]) {
    $(id).replaceChildren(...info.columns.map((c) => el("option", { value: c }, c)));
  }
  $("#text-column").value = info.text_column || info.columns[0];
  $("#label-column").value = info.label_column || info.columns[1];
  const head = el("tr", {}, ...info.columns.map((c) => el("th", {}, c)));
  const rows = info.preview.map((r) => el("tr", {}, ...info.columns.map((c) => el("td", {}, r[c] ?? ""))));
  $("#preview").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  $("#data-details").classList.remove("hidden");
  $("#job-name").value = $("#job-name").value || info.name.replace(/\.[^.]+$/, "").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "") || "my-prompt";
  $("#template").value = taskKind($("#task").value).default_template;
  labelSummary();
  loadStorage();
}

function taskKind(kind) {
  return state.info.tasks.find((t) => t.kind === kind) || state.info.tasks[0];
}

function labelSummary() {
  const info = state.upload;
  if (!info) return;
  const counts = info.chat || info.label_column === $("#label-column").value ? info.label_counts : null;
  if (counts && Object.keys(counts).length && taskKind($("#task").value).has_labels) {
    $("#label-summary").textContent = "labels: " + Object.entries(counts).map(([k, v]) => `${k} (${v})`).join(", ");
    $("#labels").value = Object.keys(counts).map((k) => `${k}=${k}`).join(",");
  } else {
    $("#label-summary").textContent = "";
    $("#labels").value = "";
  }
}

function chooseBuiltin(name) {
  const d = state.info.datasets.find((x) => x.name === name);
  if (!d) return;
  state.upload = null;
  $("#upload-file").value = "";
  $("#data-details").classList.add("hidden");
  $("#upload-error").textContent = "";
  $("#upload-status").textContent = d.description;
  $("#task").value = d.task;
  $("#template").value = d.template;
  $("#labels").value = Object.entries(d.labels).map(([k, v]) => `${k}=${v.trim()}`).join(",");
  $("#job-name").value = $("#job-name").value || d.name;
}

function jobSpec() {
  const spec = {
    name: $("#job-name").value.trim(),
    data: state.upload ? state.upload.id : $("#builtin").value,
    task: $("#task").value,
    template: $("#template").value,
    labels: taskKind($("#task").value).has_labels ? $("#labels").value.trim() : "",
    overwrite: $("#overwrite").checked,
  };
  for (const s of state.schema.settings) {  // a blank field is left out: the server's default (or recipe) applies
    const value = $("#" + s.name).value.trim();
    if (value !== "") spec[s.name] = s.type === "int" || s.type === "float" ? Number(value) : value;
  }
  if (state.upload && !state.upload.chat) {
    spec.text_column = $("#text-column").value;
    spec.label_column = $("#label-column").value;
  }
  return spec;
}

async function startJob() {
  $("#start-error").textContent = "";
  const spec = jobSpec();
  if (!spec.data) return void ($("#start-error").textContent = "Upload a file or choose a built-in dataset first.");
  try {
    const job = await postJSON("/studio/api/jobs", spec);
    watchJob(job.id);
    await loadJobs();
  } catch (e) {
    $("#start-error").textContent = e.message;
  }
}

// -- jobs and the chart -------------------------------------------------------------

async function loadJobs() {
  const { data } = await api("/studio/api/jobs");
  const body = $("#job-table tbody");
  body.replaceChildren();
  for (const j of data) {
    const best = j.result && j.result.best_metric != null ? pct(j.result.best_metric) : "\u2014";
    const actions = el("td", {});
    if (j.resumable) actions.append(el("button", { class: "small", onclick: () => resumeJob(j.id) }, "Resume"));
    if (j.state !== "running" && j.state !== "queued") {
      actions.append(el("button", { class: "small danger delete", onclick: (e) => { e.stopPropagation(); deleteJob(j.id); } }, "Delete"));
    }
    const row = el("tr", { class: "selectable", "data-id": j.id, onclick: () => watchJob(j.id) },
      el("td", {}, el("code", {}, j.id)), el("td", {}, j.name),
      el("td", {}, el("span", { class: "state " + j.state }, j.state)),
      el("td", { class: "num" }, `${j.step}${j.total_steps ? " / " + j.total_steps : ""}`),
      el("td", { class: "num" }, best), actions);
    row.classList.toggle("selected", j.id === state.jobId);
    body.append(row);
  }
  if (!state.jobId) {
    const active = data.find((j) => j.state === "running" || j.state === "queued");
    if (active) watchJob(active.id);
  }
}

async function deleteJob(id) {
  if (!(await remove(`/studio/api/jobs/${encodeURIComponent(id)}`, `job ${id} (its prompt stays)`, "#job-error"))) return;
  if (state.jobId === id) state.jobId = null;
  await loadJobs();
  loadStorage();
}

// -- storage: uploads, quotas, the plot cache -----------------------------------------

async function loadStorage() {
  const [{ data }, usage] = await Promise.all([api("/studio/api/uploads"), api("/studio/api/storage")]);
  $("#storage-summary").textContent =
    `uploads ${bytes(usage.uploads.bytes)} of ${bytes(usage.uploads.quota)} \u00b7 ` +
    `jobs ${usage.jobs.count} of ${usage.jobs.max} kept (${usage.jobs.active} of ${usage.jobs.max_active} queued or running) \u00b7 ` +
    `plot cache ${bytes(usage.cache.bytes)} of ${bytes(usage.cache.quota)}`;
  $("#upload-table tbody").replaceChildren(...data.map((u) => el("tr", { "data-id": u.id },
    el("td", {}, u.name), el("td", { class: "num" }, bytes(u.bytes)),
    el("td", {}, el("button", { class: "small danger delete", onclick: () => deleteUpload(u) }, "Delete")))));
}

async function deleteUpload(u) {
  if (!(await remove(`/studio/api/uploads/${encodeURIComponent(u.id)}`, `the uploaded file ${u.name}`, "#storage-error"))) return;
  if (state.upload && state.upload.id === u.id) {
    state.upload = null;
    $("#data-details").classList.add("hidden");
    $("#upload-status").textContent = "";
  }
  loadStorage();
}

async function clearCache() {
  $("#storage-error").textContent = "";
  try {
    await api("/studio/api/cache", { method: "DELETE" });
  } catch (e) {
    $("#storage-error").textContent = e.message;
  }
  loadStorage();
}

async function resumeJob(id) {
  try {
    await api(`/studio/api/jobs/${id}/resume`, { method: "POST" });
    watchJob(id);
    loadJobs();
  } catch (e) {
    $("#job-error").textContent = e.message;
  }
}

function watchJob(id) {
  state.jobId = id;
  clearTimeout(state.poll);
  pollJob();
}

async function pollJob() {
  const id = state.jobId;
  let job;
  try {
    job = await api(`/studio/api/jobs/${id}`);
  } catch (e) {
    $("#job-error").textContent = e.message;
    return;
  }
  if (id !== state.jobId) return;
  showJob(job);
  const active = job.state === "running" || job.state === "queued";
  if (active) state.poll = setTimeout(pollJob, 1000);
  else {
    loadJobs();
    loadStorage();
    if (job.published) setTimeout(loadPrompts, 1500); // the registry picks the new folder up within a second
  }
}

function showJob(job) {
  $("#job-title").textContent = `${job.name} \u00b7 ${job.id}`;
  $("#stat-state").textContent = job.state;
  $("#stat-state").className = "state " + job.state;
  $("#stat-step").textContent = job.total_steps ? `${job.step} / ${job.total_steps}` : String(job.step);
  const last = job.loss.length ? job.loss[job.loss.length - 1][1] : null;
  $("#stat-loss").textContent = fmt(last);
  const dev = job.dev.length ? job.dev[job.dev.length - 1][1] : null;
  $("#stat-dev").textContent = job.dev_metric === "accuracy" ? pct(dev) : fmt(dev, 3);
  $("#legend-dev").textContent = "dev " + (job.dev_metric || "metric");
  $("#stat-speed").textContent = job.examples_per_s ? job.examples_per_s.toFixed(1) : "\u2014";
  $("#stat-eta").textContent = job.state === "running" ? duration(job.eta_s) : job.state === "queued" ? "queued" : duration(0);
  $("#progress-fill").style.width = job.total_steps ? `${(100 * job.step) / job.total_steps}%` : "0";
  $("#stop-button").disabled = !(job.state === "running" || job.state === "queued");
  let message = job.error || "";
  if (job.published && !job.error) message = "";
  $("#job-error").textContent = message;
  state.lastJob = job;
  drawChart(job.loss, job.dev, job.total_steps);
  document.querySelectorAll("#job-table tbody tr").forEach((r) => r.classList.toggle("selected", r.dataset.id === job.id));
}

function drawChart(loss, dev, total) {
  const svg = $("#chart");
  // The viewBox follows the drawn size, so text and lines are never stretched.
  const W = Math.max(320, Math.round(svg.clientWidth || 800)), H = 240, L = 48, R = 44, T = 12, B = 26;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const ns = "http://www.w3.org/2000/svg";
  const make = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text != null) node.textContent = text;
    return node;
  };
  svg.replaceChildren();
  const maxStep = Math.max(total || 1, ...loss.map((p) => p[0]), 1);
  const lossMax = loss.length ? Math.max(...loss.map((p) => p[1])) * 1.05 : 1;
  const x = (s) => L + ((W - L - R) * s) / maxStep;
  const yLoss = (v) => T + (H - T - B) * (1 - v / (lossMax || 1));
  const yDev = (v) => T + (H - T - B) * (1 - v);
  for (let i = 0; i <= 4; i++) {
    const y = T + ((H - T - B) * i) / 4;
    svg.append(make("line", { x1: L, x2: W - R, y1: y, y2: y, class: "gridline" }));
    svg.append(make("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, ((lossMax * (4 - i)) / 4).toFixed(2)));
    svg.append(make("text", { x: W - R + 6, y: y + 4 }, ((100 * (4 - i)) / 4).toFixed(0) + "%"));
  }
  for (let i = 0; i <= 4; i++) {
    const s = Math.round((maxStep * i) / 4);
    svg.append(make("text", { x: x(s), y: H - 8, "text-anchor": "middle" }, s));
  }
  if (!loss.length) svg.append(make("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no steps yet"));
  if (loss.length) svg.append(make("polyline", { class: "loss", points: loss.map((p) => `${x(p[0])},${yLoss(p[1])}`).join(" ") }));
  if (dev.length) {
    svg.append(make("polyline", { class: "dev", points: dev.map((p) => `${x(p[0])},${yDev(p[1])}`).join(" ") }));
    for (const p of dev) svg.append(make("circle", { class: "dev", cx: x(p[0]), cy: yDev(p[1]), r: 3.5 }));
  }
}

// -- inspect ----------------------------------------------------------------------

// A token as readable text: escapes for whitespace, its id when it is a partial UTF-8 byte.
function tokenText(n) {
  return n.token.includes("\ufffd") ? `<${n.token_id}>` : JSON.stringify(n.token).slice(1, -1);
}

// A deep prompt (keys/values per layer): its layers' norms beside the model's own, and how far each moved.
function showLayers(r) {
  const moved = (x) => (x == null ? "\u2014" : (100 * x).toFixed(1) + "%");
  const head = el("tr", {}, ...["layer", "|key|", "model |key|", "|value|", "model |value|", "key moved", "value moved"]
    .map((h) => el("th", {}, h)));
  const rows = r.layers.map((f) => el("tr", {}, el("td", { class: "num" }, f.layer),
    ...[f.key_norm, f.model_key_norm, f.value_norm, f.model_value_norm].map((x) => el("td", { class: "num" }, fmt(x, 3))),
    el("td", { class: "num" }, moved(f.key_moved)), el("td", { class: "num" }, moved(f.value_moved))));
  $("#inspect-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
}

async function inspectPrompt() {
  const name = $("#inspect-prompt").value;
  $("#inspect-error").textContent = "";
  if (!name) return void ($("#inspect-error").textContent = "No prompt to inspect yet.");
  $("#inspect-summary").textContent = "computing\u2026";
  try {
    const r = await api(`/studio/api/prompts/${encodeURIComponent(name)}/inspect`);
    $("#inspect-summary").textContent = r.summary;
    if (r.layers) {
      showLayers(r);
    } else {
      const head = el("tr", {}, el("th", {}, "#"), el("th", {}, "norm"), el("th", {}, "norm pct"), el("th", {}, "moved"),
        el("th", {}, "near label"), el("th", {}, `nearest tokens (cosine)`));
      const rows = r.tokens.map((t) => el("tr", {},
        el("td", { class: "num" }, t.index), el("td", { class: "num" }, fmt(t.norm, 3)),
        el("td", { class: "num" }, t.norm_percentile.toFixed(0)), el("td", { class: "num" }, t.moved == null ? "\u2014" : fmt(t.moved, 3)),
        el("td", {}, t.near_label || ""),
        el("td", {}, ...t.neighbours.map((n) => el("span", { class: "tok", title: `token id ${n.token_id}` }, tokenText(n), " ", el("small", {}, n.cosine.toFixed(2)))))));
      $("#inspect-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
    }
  } catch (e) {
    $("#inspect-summary").textContent = "";
    $("#inspect-error").textContent = e.message;
    return;
  }
  const img = $("#inspect-plot");
  $("#plot-status").textContent = "drawing the plot\u2026";
  img.onload = () => { $("#plot-status").textContent = ""; img.classList.remove("hidden"); };
  img.onerror = () => { $("#plot-status").textContent = "the plot could not be drawn"; };
  img.src = `/studio/api/prompts/${encodeURIComponent(name)}/plot.png?t=${Date.now()}`;
}

// -- start -------------------------------------------------------------------------

// -- the training settings, drawn from TrainConfig's declarations (/studio/api/schema) --------------------

function settingControl(s) {
  const blank = s.optional || s.name in state.schema.defaults.by_method[state.schema.defaults.method];
  const input = s.choices
    ? el("select", { id: s.name }, ...(blank ? [el("option", { value: "" }, "default")] : []), ...s.choices.map((c) => el("option", { value: c }, c)))
    : el("input", { id: s.name, type: s.type === "str" ? "text" : "number", step: s.type === "float" ? "any" : "1" });
  return el("label", { title: `${s.help} (default: ${s.default_text})` }, s.label + " ", input);
}

function drawSettings() {
  for (const s of state.schema.settings) $(s.basic ? "#settings-basic" : "#settings-more").append(settingControl(s));
  const d = state.schema.defaults;
  for (const s of state.schema.settings) if (s.choices && !s.optional && d[s.name] != null) $("#" + s.name).value = d[s.name];
  for (const key of ["num_virtual_tokens", "steps", "batch_size"]) $("#" + key).max = state.info.limits["max_" + key];
}

// A blank field shows, greyed, the value the run gets: the chosen method's recipe, else the declared default.
function showDefaults() {
  const d = state.schema.defaults;
  const recipe = d.by_method[$("#method").value] || {};
  const optimizer = $("#optimizer").value || recipe.optimizer;
  const reparam = $("#reparam").value || "none";
  for (const s of state.schema.settings) {
    const input = $("#" + s.name);
    let shown = s.name in recipe ? recipe[s.name] : d[s.name];
    if (s.name === "lr") {
      const o = state.info.optimizers.find((x) => x.name === optimizer);
      shown = optimizer === recipe.optimizer ? recipe.lr_by_reparam[reparam] : o && +(o.lr * (state.info.reparam_lr_scale[reparam] ?? 1)).toPrecision(3);
    }
    if (input.tagName === "INPUT") input.placeholder = shown == null ? "default" : String(shown);
    else if (input.options[0] && input.options[0].value === "") input.options[0].textContent = shown == null ? "default" : `default (${shown})`;
  }
}

async function init() {
  document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => showTab(t.dataset.tab)));
  document.querySelectorAll("[data-goto]").forEach((a) => a.addEventListener("click", (e) => { e.preventDefault(); showTab(a.dataset.goto); }));
  $("#refresh-prompts").addEventListener("click", loadPrompts);
  $("#try-button").addEventListener("click", tryPrompts);
  $("#new-chat").addEventListener("click", newChat);
  $("#upload-file").addEventListener("change", (e) => e.target.files[0] && uploadFile(e.target.files[0]));
  $("#builtin").addEventListener("change", (e) => chooseBuiltin(e.target.value));
  $("#label-column").addEventListener("change", () => { state.upload.label_column = $("#label-column").value; state.upload.label_counts = {}; labelSummary(); });
  $("#task").addEventListener("change", () => {
    $("#labels-field").classList.toggle("hidden", !taskKind($("#task").value).has_labels);
    if (state.upload) $("#template").value = taskKind($("#task").value).default_template;
    labelSummary();
  });
  $("#clear-cache").addEventListener("click", clearCache);
  $("#start-button").addEventListener("click", startJob);
  $("#stop-button").addEventListener("click", async () => {
    try { await api(`/studio/api/jobs/${state.jobId}/stop`, { method: "POST" }); } catch (e) { $("#job-error").textContent = e.message; }
  });
  $("#inspect-button").addEventListener("click", inspectPrompt);

  state.info = await api("/studio/api/info");
  $("#model").textContent = "model: " + state.info.model;
  for (const d of state.info.datasets) $("#builtin").append(el("option", { value: d.name }, d.name));
  // Task kinds come from the server's registry, so a new kind needs no change here.
  $("#task").replaceChildren(...state.info.tasks.map((t) => el("option", { value: t.kind }, t.kind)));
  // The training settings every front end shares, drawn from the server's declarations.
  state.schema = await api("/studio/api/schema");
  drawSettings();
  for (const key of ["method", "optimizer", "reparam"]) $("#" + key).addEventListener("change", showDefaults);
  const d = state.info.defaults;
  $("#task").value = d.task;
  $("#template").value = taskKind(d.task).default_template;
  showDefaults();
  drawChart([], [], 0);
  window.addEventListener("resize", () => state.lastJob && drawChart(state.lastJob.loss, state.lastJob.dev, state.lastJob.total_steps));
  await Promise.all([loadPrompts(), loadJobs(), loadStorage()]);
  document.body.dataset.ready = "1";
}

init().catch((e) => { document.body.prepend(el("p", { class: "error" }, "The studio could not start: " + e.message)); });
