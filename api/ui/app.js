// The hwnas web view: a single-page app over the /v1 API (no build step).
// The API token is kept in sessionStorage and sent as Authorization on every request.
"use strict";

const TOKEN_KEY = "hwnas.token";
const POLL_MS = Number(new URLSearchParams(location.search).get("poll_ms")) || 2000;
const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);
const KINDS = ["train_supernet", "build_latency_table", "search", "export_subnet"];
const STATUSES = ["QUEUED", "RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED"];
const AGENT_ONLINE_S = 120;
const main = document.getElementById("main");
let page = { abort: new AbortController(), timers: [] };

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.code = body ? body.code : null;
    this.field = body ? body.field : null;
  }
}

// ---- DOM helpers: text always goes through textContent ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function table(headers, rows, attrs) {
  return h("table", attrs, h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, "none yet"))));
}

function dl(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function fmt(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") {
    if (Number.isInteger(value) && Math.abs(value) < 1e6) return String(value);
    return Math.abs(value) >= 1e6 ? value.toExponential(3) : String(Number(value.toPrecision(4)));
  }
  return String(value);
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

// ---- the API ----

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function request(path, options = {}) {
  const headers = { Authorization: `Bearer ${token()}`, ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers, signal: page.abort.signal });
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      // the error has no JSON body: its status says it all
    }
    throw new ApiError(response.status, body);
  }
  return response;
}

async function api(path, options) {
  return (await request(path, options)).json();
}

// The job's server-sent events, read with fetch (EventSource cannot send Authorization).
async function streamEvents(jobId, onEvent) {
  let after = 0;
  for (;;) {
    const response = await request(`/v1/jobs/${jobId}/events?after=${after}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (event) {
          after = event.id;
          onEvent(event);
        }
      }
    }
    const job = await api(`/v1/jobs/${jobId}`);
    if (TERMINAL.has(job.status)) return;
  }
}

function parseEvent(block) {
  const event = { id: null, event: "message", data: "" };
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "id") event.id = Number(value);
    else if (field === "event") event.event = value;
    else if (field === "data") event.data += value;
  }
  if (event.id === null) return null;
  event.data = event.data ? JSON.parse(event.data) : {};
  return event;
}

// ---- pages, errors and live updates ----

function every(ms, fn) {
  const tick = () => fn().catch(showError);
  page.timers.push(setInterval(tick, ms));
}

function showError(error) {
  if (error && error.name === "AbortError") return;
  if (error instanceof ApiError && error.status === 401) {
    signOut("The API did not accept your token (401): it may have been revoked. Sign in again.");
    return;
  }
  const text = error instanceof ApiError
    ? `${error.status} ${error.code || "error"}: ${error.message}${error.field ? ` (field: ${error.field})` : ""}`
    : String(error && error.message ? error.message : error);
  let box = document.getElementById("error");
  if (!box) {
    box = h("p", { id: "error", class: "error", role: "alert" });
    main.prepend(box);
  }
  box.textContent = text;
}

// Replace the element's children; null, undefined and false are left out, arrays flattened.
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function render(...children) {
  fill(main, ...children);
}

function progressOf(p) {
  if (!p) return null;
  const pairs = [["done", "total"], ["evaluations", "budget"], ["step", "steps"]];
  let fraction = null;
  if (p.epochs) {
    const within = p.steps ? (p.step + 1) / p.steps : 1;
    const phases = p.phases || 1;
    fraction = ((p.phase_index || 0) + (p.epoch + within) / p.epochs) / phases;
  } else {
    for (const [a, b] of pairs) {
      if (typeof p[a] === "number" && p[b]) {
        fraction = p[a] / p[b];
        break;
      }
    }
  }
  const parts = [];
  if (p.stage) parts.push(p.stage);
  if (p.phase) parts.push(p.phase);
  if (p.epochs) parts.push(`epoch ${p.epoch + 1}/${p.epochs}`);
  if (p.steps && !p.epochs) parts.push(`step ${p.step}/${p.steps}`);
  if (p.total) parts.push(`${p.done}/${p.total}`);
  if (p.budget) parts.push(`${p.evaluations}/${p.budget} evaluations`);
  if (typeof p.loss === "number") parts.push(`loss ${fmt(p.loss)}`);
  return { fraction: fraction === null ? null : Math.max(0, Math.min(1, fraction)), text: parts.join(" · ") };
}

function progressCell(progress, status) {
  const p = progressOf(progress);
  if (status === "SUCCEEDED") return h("span", { class: "progress" }, "done");
  if (!p) return h("span", { class: "progress" }, "—");
  const pct = p.fraction === null ? null : Math.round(p.fraction * 100);
  return h("span", { class: "progress" },
    pct === null ? null : h("progress", { max: 100, value: pct, "aria-label": `${pct}%` }),
    ` ${pct === null ? "" : `${pct}% `}${p.text}`);
}

function statusBadge(status) {
  return h("span", { class: `status status-${(status || "none").toLowerCase()}` }, status || "—");
}

async function allItems(path) {
  const items = [];
  let next = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const body = await api(`${path}${sep}page_size=100${next ? `&page_token=${encodeURIComponent(next)}` : ""}`);
    items.push(...body.items);
    next = body.next_page_token;
  } while (next && items.length < 1000);
  return items;
}

function jobErrorText(job) {
  return job.error ? `${job.error.code}: ${job.error.message}` : "";
}

// ---- sign in ----

function signInPage(message) {
  document.getElementById("nav").hidden = true;
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, size: 48 });
  const error = h("p", { id: "signin-error", class: "error", role: "alert", hidden: !message }, message || "");
  const form = h("form", { id: "signin", class: "card" },
    h("h1", {}, "Sign in"),
    h("p", {}, "Paste an API token (", h("code", {}, "hwnas admin create-token NAME"),
      "). It stays in this tab only (sessionStorage) and is sent as the Authorization header."),
    h("label", { for: "token" }, "API token "), input, " ", h("button", { type: "submit" }, "Sign in"), error);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn(input.value.trim(), error).catch(showError);
  });
  render(form);
  input.focus();
}

async function signIn(value, error) {
  sessionStorage.setItem(TOKEN_KEY, value);
  try {
    await api("/v1/jobs?page_size=1");
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    error.hidden = false;
    error.textContent = e instanceof ApiError && e.status === 401
      ? "This token was not accepted (401 unauthorized): check that you pasted the whole token, or create one with hwnas admin create-token NAME."
      : `Could not reach the API: ${e.message}`;
    return;
  }
  if (!location.hash || location.hash === "#/signin") location.hash = "#/searches";
  else route();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  resetPage();
  signInPage(message);
}

// ---- searches ----

async function searchesPage() {
  const body = h("tbody");
  const section = h("section", {}, h("h1", {}, "Searches"),
    h("table", { id: "searches" }, h("thead", {}, h("tr", {},
      ["Search", "Status", "Supernet", "Targets", "Algorithm", "Budget", "Progress", "Created"].map((x) => h("th", { scope: "col" }, x)))), body));
  render(section);
  const refresh = async () => {
    const [searches, jobs] = await Promise.all([allItems("/v1/searches"), allItems("/v1/jobs?kind=search")]);
    const byId = new Map(jobs.map((j) => [j.id, j]));
    body.replaceChildren(...(searches.length ? searches.map((s) => {
      const job = byId.get(s.job_id);
      return h("tr", { dataset: { search: s.id } },
        h("td", {}, h("a", { href: `#/searches/${s.id}` }, `#${s.id}`)), h("td", {}, statusBadge(s.status)),
        h("td", {}, h("a", { href: `#/supernets/${s.supernet_id}` }, `#${s.supernet_id}`)),
        h("td", {}, s.targets.join(", ") || "—"), h("td", {}, s.algorithm), h("td", {}, fmt(s.budget)),
        h("td", { class: "live-progress" }, progressCell(job ? job.progress : null, s.status)), h("td", {}, when(s.created_at)));
    }) : [h("tr", {}, h("td", { colspan: 8, class: "empty" }, "No searches yet: hwnas submit search ..."))]));
  };
  await refresh();
  every(POLL_MS, refresh);
}

function objectivesOf(front) {
  const seen = [...front.objectives];
  for (const p of front.points) {
    for (const values of [p.predicted, p.validated]) {
      for (const key of Object.keys(values || {})) if (!seen.includes(key)) seen.push(key);
    }
  }
  return seen;
}

function directionOf(front, objective) {
  return front.directions[objective] || (objective.startsWith("accuracy") ? "max" : "min");
}

// Members another member beats on every objective of the search (validated values where known).
function dominatedSet(front) {
  const value = (p, o) => (p.validated && o in p.validated ? p.validated[o] : p.predicted ? p.predicted[o] : undefined);
  const sign = Object.fromEntries(front.objectives.map((o) => [o, directionOf(front, o) === "max" ? 1 : -1]));
  const dominated = new Set();
  for (const a of front.points) {
    if (a.pareto_rank) dominated.add(a.subnet_id);
    for (const b of front.points) {
      if (a === b) continue;
      let better = false;
      let worse = false;
      for (const o of front.objectives) {
        const va = value(a, o);
        const vb = value(b, o);
        if (typeof va !== "number" || typeof vb !== "number") {
          worse = true;
          break;
        }
        if (sign[o] * vb > sign[o] * va) better = true;
        else if (sign[o] * vb < sign[o] * va) worse = true;
      }
      if (better && !worse) {
        dominated.add(a.subnet_id);
        break;
      }
    }
  }
  return dominated;
}

function stagesOf(arch) {
  if (!Array.isArray(arch.d) || !Array.isArray(arch.ks)) return [];
  const per = Math.floor(arch.ks.length / arch.d.length) || 1;
  return arch.d.map((depth, i) => ({
    stage: i + 1, depth, ks: arch.ks.slice(i * per, i * per + depth), e: (arch.e || []).slice(i * per, i * per + depth),
  }));
}

function archSummary(arch) {
  const stages = stagesOf(arch);
  if (!stages.length) return JSON.stringify(arch).slice(0, 80);
  const kinds = (key) => [...new Set(stages.flatMap((s) => s[key]))].sort((a, b) => a - b).join("/");
  return `r${arch.r} · depth ${arch.d.join("-")} · k ${kinds("ks")} · e ${kinds("e")}`;
}

function pointText(front, p, dominated) {
  const lines = [`subnet #${p.subnet_id} · ${p.arch_key}`, archSummary(p.arch)];
  const all = { ...(p.predicted || {}), ...(p.validated || {}) };
  lines.push(`MACs ${fmt(all.macs)} · params ${fmt(all.params)}`);
  for (const o of objectivesOf(front)) {
    if (o === "macs" || o === "params") continue;
    lines.push(`${o}: predicted ${fmt(p.predicted ? p.predicted[o] : null)} · validated ${fmt(p.validated ? p.validated[o] : null)}`);
  }
  if (dominated.has(p.subnet_id)) lines.push("dominated by another member");
  return lines;
}

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function searchPage(id) {
  const [search, front] = await Promise.all([api(`/v1/searches/${id}`), api(`/v1/searches/${id}/pareto`)]);
  const header = h("div", { class: "head" });
  const panel = h("aside", { id: "subnet-panel", class: "card", hidden: true });
  const info = h("div", { id: "point-info", class: "card", "aria-live": "polite" }, "Hover over a point to see its numbers; click it to open the subnet.");
  const controls = h("div", { class: "controls" });
  const plot = h("div", { id: "front", class: "plot" });
  const tableBox = h("div", { id: "front-table-box" });
  render(h("section", {}, header, h("div", { class: "front-layout" }, h("div", {}, controls, plot, info), panel),
    h("h2", {}, "Front as a table"), tableBox));

  const renderHeader = (s, job) => fill(header,
    h("h1", {}, `Search #${s.id} `, statusBadge(s.status)),
    dl([["supernet", h("a", { href: `#/supernets/${s.supernet_id}` }, `#${s.supernet_id}`)], ["objectives", s.objectives.join(", ")],
      ["targets", s.targets.join(", ") || "—"], ["algorithm", s.algorithm], ["budget", fmt(s.budget)],
      ["constraints", Object.entries(s.constraints).map(([k, v]) => `${k} ≤ ${v}`).join(", ") || "—"],
      ["hypervolume", s.hypervolume === null ? null : fmt(s.hypervolume)],
      ["job", s.job_id ? h("a", { href: `#/jobs/${s.job_id}` }, `#${s.job_id}`) : null],
      ["progress", job && !TERMINAL.has(s.status) ? progressCell(job.progress, s.status) : null],
      ["created", when(s.created_at)], ["why empty", s.empty_reason]]),
    s.status && !TERMINAL.has(s.status) && s.status !== "CANCELLING"
      ? h("button", { type: "button", onclick: () => cancelSearch(s.id).catch(showError) }, "Cancel search") : null);
  renderHeader(search, null);
  if (search.job_id && !TERMINAL.has(search.status)) {
    every(POLL_MS, async () => {
      const [s, job] = await Promise.all([api(`/v1/searches/${id}`), api(`/v1/jobs/${search.job_id}`)]);
      renderHeader(s, job);
      if (TERMINAL.has(s.status)) route();
    });
  }
  if (!front.points.length) {
    plot.replaceChildren(h("p", { class: "empty" }, front.empty_reason || "The front is empty until the search ends."));
    return;
  }
  drawFront(front, { controls, plot, info, panel, tableBox });
}

function drawFront(front, { controls, plot, info, panel, tableBox }) {
  const objectives = objectivesOf(front);
  const dominated = dominatedSet(front);
  const pick = (label, idName, initial, allowNone) => {
    const select = h("select", { id: idName }, allowNone ? h("option", { value: "" }, "none") : null,
      objectives.map((o) => h("option", { value: o, selected: o === initial }, o)));
    select.addEventListener("change", draw);
    controls.append(h("label", {}, `${label} `, select), " ");
    return select;
  };
  const xSel = pick("x", "axis-x", front.objectives[1] || objectives[1] || objectives[0], false);
  const ySel = pick("y", "axis-y", front.objectives[0], false);
  const cSel = pick("colour", "axis-colour", front.objectives[2] || "", true);
  const texts = new Map(front.points.map((p) => [p.subnet_id, pointText(front, p, dominated)]));
  const open = (p) => openSubnet(p.subnet_id, front, panel).catch(showError);

  function draw() {
    const [xo, yo, co] = [xSel.value, ySel.value, cSel.value];
    const get = (p, kind, o) => (p[kind] && typeof p[kind][o] === "number" ? p[kind][o] : null);
    const series = (kind) => {
      const pts = front.points.filter((p) => get(p, kind, xo) !== null && get(p, kind, yo) !== null);
      return {
        pts, x: pts.map((p) => get(p, kind, xo)), y: pts.map((p) => get(p, kind, yo)),
        hovertext: pts.map((p) => texts.get(p.subnet_id).map(escapeHtml).join("<br>")), customdata: pts.map((p) => p.subnet_id),
      };
    };
    const pred = series("predicted");
    const val = series("validated");
    const colour = (s, kind) => (co ? s.pts.map((p) => get(p, kind, co) ?? get(p, "predicted", co)) : "#1f77b4");
    const marker = (s, kind, symbol) => ({
      symbol, size: 10, color: colour(s, kind), colorscale: "Viridis", line: { width: 1, color: "#333" },
      showscale: Boolean(co) && kind === "predicted", colorbar: co ? { title: { text: co } } : undefined,
    });
    const links = { x: [], y: [] };
    for (const p of front.points) {
      const a = [get(p, "predicted", xo), get(p, "predicted", yo), get(p, "validated", xo), get(p, "validated", yo)];
      if (a.every((v) => v !== null)) {
        links.x.push(a[0], a[2], null);
        links.y.push(a[1], a[3], null);
      }
    }
    const dom = front.points.filter((p) => dominated.has(p.subnet_id));
    const domKind = (p) => (get(p, "validated", xo) !== null && get(p, "validated", yo) !== null ? "validated" : "predicted");
    const traces = [
      { name: "predicted", type: "scatter", mode: "markers", x: pred.x, y: pred.y, hovertext: pred.hovertext, hoverinfo: "text", customdata: pred.customdata, marker: marker(pred, "predicted", "circle") },
      { name: "validated", type: "scatter", mode: "markers", x: val.x, y: val.y, hovertext: val.hovertext, hoverinfo: "text", customdata: val.customdata, marker: marker(val, "validated", "diamond") },
      { name: "predicted → validated", type: "scatter", mode: "lines", x: links.x, y: links.y, hoverinfo: "skip", line: { color: "#999", width: 1, dash: "dot" } },
      { name: "dominated", type: "scatter", mode: "markers", x: dom.map((p) => get(p, domKind(p), xo)), y: dom.map((p) => get(p, domKind(p), yo)), hoverinfo: "skip", marker: { symbol: "x-open", size: 16, color: "#d62728" } },
    ];
    const axis = (o) => ({ title: { text: `${o} (${directionOf(front, o)})` }, zeroline: false });
    Plotly.react(plot, traces, {
      margin: { t: 20, r: 10, b: 50, l: 60 }, xaxis: axis(xo), yaxis: axis(yo), hovermode: "closest",
      legend: { orientation: "h", y: -0.2 }, height: 460,
    }, { displaylogo: false });
    plot.dataset.points = String(pred.x.length);
    plot.dataset.validated = String(val.x.length);
  }

  draw();
  plot.on("plotly_hover", (ev) => {
    const pt = ev.points.find((x) => x.customdata !== undefined);
    if (pt) info.replaceChildren(...texts.get(pt.customdata).map((line) => h("div", {}, line)));
  });
  plot.on("plotly_click", (ev) => {
    const pt = ev.points.find((x) => x.customdata !== undefined);
    if (pt) open(front.points.find((p) => p.subnet_id === pt.customdata));
  });
  tableBox.replaceChildren(frontTable(front, objectives, dominated, open));
  plot.dataset.readyMs = String(Math.round(performance.now()));  // since navigation: bench/ui_render.py reads it
  plot.dataset.ready = "true";
}

function frontTable(front, objectives, dominated, open) {
  const columns = [
    { label: "Subnet", value: (p) => p.subnet_id },
    { label: "Key", value: (p) => p.arch_key },
    { label: "Arch", value: (p) => archSummary(p.arch) },
    { label: "Dominated", value: (p) => (dominated.has(p.subnet_id) ? "yes" : "no") },
    ...objectives.flatMap((o) => [
      { label: `${o} predicted`, value: (p) => (p.predicted ? p.predicted[o] : null) },
      { label: `${o} validated`, value: (p) => (p.validated ? p.validated[o] : null) },
    ]),
  ];
  let sortBy = 0;
  let ascending = true;
  const body = h("tbody");
  const heads = columns.map((c, i) => h("th", { scope: "col", "aria-sort": "none" },
    h("button", { type: "button", class: "sort", onclick: () => { ascending = sortBy === i ? !ascending : true; sortBy = i; sortRows(); } }, c.label)));
  const sortRows = () => {
    const key = columns[sortBy].value;
    const rows = [...front.points].sort((a, b) => {
      const [va, vb] = [key(a), key(b)];
      if (va === vb) return 0;
      if (va === null || va === undefined) return 1;
      if (vb === null || vb === undefined) return -1;
      return (va < vb ? -1 : 1) * (ascending ? 1 : -1);
    });
    heads.forEach((th, i) => th.setAttribute("aria-sort", i === sortBy ? (ascending ? "ascending" : "descending") : "none"));
    body.replaceChildren(...rows.map((p) => h("tr", { dataset: { subnet: p.subnet_id }, class: dominated.has(p.subnet_id) ? "dominated" : null },
      columns.map((c, i) => (i === 0
        ? h("td", {}, h("button", { type: "button", class: "link", onclick: () => open(p) }, `#${p.subnet_id}`))
        : h("td", {}, fmt(c.value(p))))))));
  };
  sortRows();
  return h("table", { id: "front-table" }, h("caption", {}, `${front.points.length} members; sort by any column`), h("thead", {}, h("tr", {}, heads)), body);
}

async function openSubnet(id, front, panel) {
  const s = await api(`/v1/subnets/${id}`);
  const status = h("p", { id: "download-status", role: "status" });
  const objectives = objectivesOf(front);
  const button = (format) => h("button", {
    type: "button", class: "download", dataset: { format }, disabled: !s.download_url,
    onclick: () => download(s.id, format, status).catch((e) => { status.textContent = ""; showError(e); }),
  }, `Download ${format}`);
  panel.hidden = false;
  fill(panel,
    h("h2", {}, `Subnet #${s.id}`),
    h("button", { type: "button", class: "close", "aria-label": "close", onclick: () => { panel.hidden = true; } }, "×"),
    dl([["key", s.arch_key], ["resolution", s.arch.r ? `${s.arch.r} px` : null], ["pareto rank", fmt(s.pareto_rank)],
      ["created", when(s.created_at)]]),
    table(["Stage", "Depth", "Kernels", "Expand"], stagesOf(s.arch).map((st) => h("tr", {},
      h("td", {}, st.stage), h("td", {}, st.depth), h("td", {}, st.ks.join(" ")), h("td", {}, st.e.join(" "))))),
    table(["Objective", "Predicted", "Validated"], objectives.map((o) => h("tr", {},
      h("td", {}, o), h("td", {}, fmt(s.predicted ? s.predicted[o] : null)), h("td", {}, fmt(s.validated ? s.validated[o] : null)))),
    { class: "numbers" }),
    h("div", { class: "downloads" }, ["onnx", "safetensors", "bundle"].map(button)),
    s.download_url ? null : h("p", { class: "empty" }, "No files yet: the search stores them when it validates the front."),
    status);
}

async function download(id, format, status) {
  status.textContent = `downloading ${format}…`;
  const response = await request(`/v1/subnets/${id}/download?format=${format}`);
  const expected = response.headers.get("X-Content-SHA256");
  const blob = await response.blob();
  const name = `subnet-${id}.${format === "bundle" ? "zip" : format}`;
  let digest = null;
  if (globalThis.crypto && crypto.subtle) {
    const bytes = new Uint8Array(await crypto.subtle.digest("SHA-256", await blob.arrayBuffer()));
    digest = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  }
  if (digest && expected && digest !== expected) {
    status.textContent = `${name}: sha256 ${digest} differs from the server's ${expected}; not saved.`;
    status.className = "error";
    return;
  }
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
  status.className = "ok";
  status.dataset.sha256 = digest || "";
  status.dataset.file = name;
  status.textContent = digest
    ? `Saved ${name} (${blob.size} bytes); sha256 ${digest} matches X-Content-SHA256.`
    : `Saved ${name} (${blob.size} bytes); the server's sha256 is ${expected} (this browser cannot check it over plain http).`;
}

async function cancelSearch(id) {
  await api(`/v1/searches/${id}/cancel`, { method: "POST" });
  route();
}

// ---- supernets ----

async function supernetsPage() {
  const [supernets, training] = await Promise.all([allItems("/v1/supernets"), allItems("/v1/jobs?kind=train_supernet")]);
  const running = training.filter((j) => !TERMINAL.has(j.status));
  const trainingBody = h("tbody");
  const update = (jobs) => trainingBody.replaceChildren(...(jobs.length ? jobs.map((j) => h("tr", {},
    h("td", {}, h("a", { href: `#/jobs/${j.id}` }, `job #${j.id}`)), h("td", {}, statusBadge(j.status)),
    h("td", {}, j.params.config ? `${j.params.config.space} on ${j.params.config.dataset}` : "—"),
    h("td", { class: "live-progress" }, progressCell(j.progress, j.status)))) : [h("tr", {}, h("td", { colspan: 4, class: "empty" }, "none"))]));
  update(running);
  render(h("section", {}, h("h1", {}, "Supernets"),
    table(["Supernet", "Name", "Space", "Dataset", "Strategy", "Epochs", "Final loss", "Created"], supernets.map((s) => h("tr", {},
      h("td", {}, h("a", { href: `#/supernets/${s.id}` }, `#${s.id}`)), h("td", {}, s.name || "—"), h("td", {}, s.space),
      h("td", {}, s.dataset), h("td", {}, s.strategy), h("td", {}, fmt(s.metrics ? s.metrics.epochs : null)),
      h("td", {}, fmt(s.metrics ? s.metrics.final_loss : null)), h("td", {}, when(s.created_at)))), { id: "supernets" }),
    h("h2", {}, "Training now"),
    h("table", { id: "training" }, h("thead", {}, h("tr", {}, ["Job", "Status", "Config", "Progress"].map((x) => h("th", {}, x)))), trainingBody)));
  every(POLL_MS, async () => update((await allItems("/v1/jobs?kind=train_supernet")).filter((j) => !TERMINAL.has(j.status))));
}

async function supernetPage(id) {
  const s = await api(`/v1/supernets/${id}`);
  const searches = (await allItems("/v1/searches")).filter((x) => x.supernet_id === s.id);
  const curves = h("div", { id: "curves", class: "plot" });
  render(h("section", {}, h("h1", {}, `Supernet #${s.id} ${s.name || ""}`),
    dl([["space", s.space], ["dataset", s.dataset], ["strategy", s.strategy], ["epochs", fmt(s.metrics ? s.metrics.epochs : null)],
      ["final loss", fmt(s.metrics ? s.metrics.final_loss : null)],
      ["training job", s.job_id ? h("a", { href: `#/jobs/${s.job_id}` }, `#${s.job_id}`) : null], ["created", when(s.created_at)]]),
    h("h2", {}, "Training curves"), curves,
    h("h2", {}, "Searches on it"),
    table(["Search", "Status", "Objectives", "Targets", "Created"], searches.map((x) => h("tr", {},
      h("td", {}, h("a", { href: `#/searches/${x.id}` }, `#${x.id}`)), h("td", {}, statusBadge(x.status)),
      h("td", {}, x.objectives.join(", ")), h("td", {}, x.targets.join(", ") || "—"), h("td", {}, when(x.created_at)))), { id: "supernet-searches" })));
  if (s.job_id) {
    const drawn = trainingCurves(curves);
    streamEvents(s.job_id, drawn.add).then(drawn.end).catch(showError);
  }
  else curves.replaceChildren(h("p", { class: "empty" }, "No training job recorded for this supernet."));
}

// Loss and any accuracy the training reports, per epoch, drawn from the job's events as they come.
// Returns `add(event)` for each event and `end()` once the stream has ended.
function trainingCurves(box) {
  const epochs = new Map();
  const message = h("p", { class: "empty" }, "Waiting for the first epoch…");
  const plot = h("div", { class: "plot" });
  fill(box, message, plot);
  let timer = null;
  const draw = () => {
    timer = null;
    message.hidden = true;
    const rows = [...epochs.values()];
    const x = rows.map((_, i) => i + 1);
    const accKeys = [...new Set(rows.flatMap((r) => Object.keys(r.acc)))];
    const traces = [{ name: "loss", x, y: rows.map((r) => r.loss), type: "scatter", mode: "lines+markers" },
      ...accKeys.map((k) => ({ name: k, x, y: rows.map((r) => r.acc[k] ?? null), yaxis: "y2", type: "scatter", mode: "lines+markers" }))];
    Plotly.react(plot, traces, {
      margin: { t: 20, r: 60, b: 40, l: 60 }, height: 320, legend: { orientation: "h", y: -0.25 },
      xaxis: { title: { text: "epoch" }, dtick: rows.length <= 20 ? 1 : undefined }, yaxis: { title: { text: "loss" } },
      yaxis2: { title: { text: "validation accuracy" }, overlaying: "y", side: "right" },
    }, { displaylogo: false });
    box.dataset.epochs = String(rows.length);
  };
  return {
    add(event) {
      const d = event.data;
      if (event.event !== "progress" || typeof d.epoch !== "number") return;
      const key = `${d.phase_index || 0}:${d.epoch}`;
      const row = epochs.get(key) || { loss: null, acc: {} };
      if (typeof d.loss === "number") row.loss = d.loss;
      for (const [k, v] of Object.entries(d)) if (/acc/i.test(k) && typeof v === "number") row.acc[k] = v;
      epochs.set(key, row);
      if (!timer) timer = setTimeout(draw, 200);
    },
    end() {
      if (!epochs.size) message.textContent = "The training job reported no epochs.";
    },
  };
}

// ---- jobs ----

async function jobsPage() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const select = (name, values) => {
    const el = h("select", { id: `filter-${name}` }, h("option", { value: "" }, "any"),
      values.map((v) => h("option", { value: v, selected: params.get(name) === v }, v)));
    el.addEventListener("change", () => {
      params.set(name, el.value);
      location.hash = `#/jobs?${params}`;
    });
    return h("label", {}, `${name} `, el, " ");
  };
  const body = h("tbody");
  render(h("section", {}, h("h1", {}, "Jobs"), h("div", { class: "controls" }, select("kind", KINDS), select("status", STATUSES)),
    h("table", { id: "jobs" }, h("thead", {}, h("tr", {}, ["Job", "Kind", "Status", "Attempts", "Progress", "Created", "Error"].map((x) => h("th", {}, x)))), body)));
  const query = [...params].filter(([, v]) => v).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");
  const refresh = async () => {
    const jobs = await allItems(`/v1/jobs${query ? `?${query}` : ""}`);
    body.replaceChildren(...(jobs.length ? jobs.map((j) => h("tr", { dataset: { job: j.id } },
      h("td", {}, h("a", { href: `#/jobs/${j.id}` }, `#${j.id}`)), h("td", {}, j.kind), h("td", {}, statusBadge(j.status)),
      h("td", {}, `${j.attempts}/${j.max_attempts}`), h("td", { class: "live-progress" }, progressCell(j.progress, j.status)),
      h("td", {}, when(j.created_at)), h("td", { class: "error-text" }, jobErrorText(j)))) : [h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No jobs."))]));
  };
  await refresh();
  every(POLL_MS, refresh);
}

async function jobPage(id) {
  const job = await api(`/v1/jobs/${id}`);
  const search = job.kind === "search" ? (await allItems("/v1/searches")).find((s) => s.job_id === job.id) : null;
  const head = h("div");
  const progress = h("div", { id: "job-progress", class: "live-progress" });
  const log = h("ol", { id: "events", class: "events" });
  const curves = job.kind === "train_supernet" ? h("div", { id: "curves", class: "plot" }) : null;
  const renderHead = (j) => fill(head,
    h("h1", {}, `Job #${j.id} · ${j.kind} `, h("span", { id: "job-status" }, statusBadge(j.status))),
    dl([["attempts", `${j.attempts}/${j.max_attempts}`], ["created", when(j.created_at)], ["started", when(j.started_at)],
      ["finished", when(j.finished_at)], ["search", search ? h("a", { href: `#/searches/${search.id}` }, `#${search.id}`) : null]]),
    j.error ? h("p", { id: "job-error", class: "error", role: "alert" }, jobErrorText(j)) : null,
    search && !TERMINAL.has(j.status) && j.status !== "CANCELLING"
      ? h("button", { type: "button", id: "cancel", onclick: () => cancelSearch(search.id).catch(showError) }, "Cancel search") : null);
  renderHead(job);
  progress.replaceChildren(progressCell(job.progress, job.status));
  render(h("section", {}, head, h("h2", {}, "Progress"), progress, curves ? [h("h2", {}, "Training curves"), curves] : null,
    h("details", {}, h("summary", {}, "Parameters"), json(job.params)),
    job.result ? h("details", {}, h("summary", {}, "Result"), json(job.result)) : null,
    h("h2", {}, "Events"), log));
  const drawn = curves ? trainingCurves(curves) : null;
  let latest = job;
  await streamEvents(job.id, (event) => {
    const d = event.data;
    if (drawn) drawn.add(event);
    if (event.event === "progress") progress.replaceChildren(progressCell(d, latest.status));
    if (event.event === "status") {
      latest = { ...latest, status: d.status };
      api(`/v1/jobs/${id}`).then((j) => { latest = j; renderHead(j); }).catch(showError);
    }
    const text = event.event === "log" ? d.message : JSON.stringify(Object.fromEntries(Object.entries(d).filter(([k]) => k !== "at" && k !== "attempt")));
    log.append(h("li", { class: `event event-${event.event}` }, h("time", {}, when(d.at)), ` ${event.event} `, text));
    while (log.children.length > 500) log.firstChild.remove();
  });
  if (drawn) drawn.end();
}

// ---- targets ----

async function targetsPage() {
  const targets = await allItems("/v1/targets");
  render(h("section", {}, h("h1", {}, "Targets"),
    table(["Target", "Device", "Runtime", "Shared", "Created"], targets.map((t) => h("tr", {},
      h("td", {}, h("a", { href: `#/targets/${encodeURIComponent(t.name)}` }, t.name)), h("td", {}, t.device), h("td", {}, t.runtime),
      h("td", {}, t.shared ? "built-in" : "yours"), h("td", {}, when(t.created_at)))), { id: "targets" })));
}

async function targetPage(name) {
  const path = `/v1/targets/${encodeURIComponent(name)}`;
  const [t, models, agents, tasks] = await Promise.all([api(path), api(`${path}/models`), allItems("/v1/agents"),
    allItems(`${path}/tasks?status=QUEUED`)]);
  const mine = agents.filter((a) => a.targets.includes(t.name));
  const { environment, ...settings } = t.settings;
  const now = Date.now();
  const qualityCell = (q) => (q ? Object.entries(q).filter(([, v]) => typeof v !== "object").map(([k, v]) => `${k} ${fmt(v)}`).join(" · ") : "not measured");
  const scatter = h("div", { id: "quality-plot", class: "plot" });
  render(h("section", {}, h("h1", {}, `Target ${t.name}`), h("p", {}, t.description || ""),
    dl([["device", t.device], ["runtime", t.runtime], ["shared", t.shared ? "built-in" : "yours"], ...Object.entries(settings).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : fmt(v)])]),
    h("h2", {}, "Latency models"),
    table(["Model", "Kind", "Space", "Quality (held-out measurements)", "Created"], models.map((m) => h("tr", {},
      h("td", {}, `#${m.id}`), h("td", {}, m.kind), h("td", {}, m.space), h("td", {}, qualityCell(m.quality)), h("td", {}, when(m.created_at)))), { id: "models" }),
    scatter,
    h("h2", {}, "Agents"),
    table(["Agent", "State", "Last seen", "Targets"], mine.map((a) => {
      const online = a.last_seen_at && now - new Date(a.last_seen_at).getTime() < AGENT_ONLINE_S * 1000;
      return h("tr", {}, h("td", {}, a.name), h("td", {}, h("span", { class: online ? "status status-running" : "status status-cancelled" }, online ? "online" : "offline")),
        h("td", {}, when(a.last_seen_at)), h("td", {}, a.targets.join(", ")));
    }), { id: "agents" }),
    h("h2", {}, "Pending tasks"),
    tasks.length ? table(["Task", "Status", "Model sha256", "Runs"], tasks.map((k) => h("tr", {},
      h("td", {}, `#${k.id}`), h("td", {}, k.status), h("td", {}, (k.model_sha256 || "").slice(0, 16)),
      h("td", {}, fmt(k.settings.runs)))), { id: "tasks" }) : h("p", { class: "empty", id: "tasks" }, "No task is waiting for an agent."),
    h("h2", {}, "Device facts"), environment ? json(environment) : h("p", { class: "empty" }, "No agent has reported this device yet.")));
  const pairs = models.filter((m) => m.quality && Array.isArray(m.quality.predicted) && Array.isArray(m.quality.measured));
  if (pairs.length) {
    Plotly.react(scatter, pairs.map((m) => ({ name: `model #${m.id}`, x: m.quality.measured, y: m.quality.predicted, type: "scatter", mode: "markers" })), {
      height: 320, margin: { t: 20 }, xaxis: { title: { text: "measured ms" } }, yaxis: { title: { text: "predicted ms" } },
    }, { displaylogo: false });
  }
}

// ---- routing ----

const ROUTES = [
  [/^#\/searches$/, searchesPage], [/^#\/searches\/(\d+)$/, searchPage],
  [/^#\/supernets$/, supernetsPage], [/^#\/supernets\/(\d+)$/, supernetPage],
  [/^#\/jobs(\?.*)?$/, jobsPage], [/^#\/jobs\/(\d+)$/, jobPage],
  [/^#\/targets$/, targetsPage], [/^#\/targets\/(.+)$/, (n) => targetPage(decodeURIComponent(n))],
];

function resetPage() {
  page.abort.abort();
  page.timers.forEach(clearInterval);
  page = { abort: new AbortController(), timers: [] };
}

function route() {
  resetPage();
  if (!token()) {
    signInPage();
    return;
  }
  document.getElementById("nav").hidden = false;
  const hash = location.hash || "#/searches";
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("active", hash.startsWith(a.getAttribute("href")));
  }
  for (const [pattern, show] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      render(h("p", { class: "loading" }, "Loading…"));
      main.dataset.page = hash;
      show(...match.slice(1).filter((x) => x !== undefined && !x.startsWith("?"))).catch(showError);
      return;
    }
  }
  render(h("p", { class: "error", role: "alert" }, `No page ${hash}.`));
}

document.getElementById("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", route);
route();
