// The monitoring page. Plain JS, no build step: every call goes to the admin API with the key
// from sessionStorage in the X-API-Key header (never in a URL). Job progress comes from each
// job's Server-Sent Events, read with fetch() streaming because EventSource cannot send headers.
"use strict";

const KEY = "ocrGatewayAdminKey";
const API = "/api/v1";
const OVERVIEW_EVERY_MS = 2000;
const JOBS_EVERY_MS = 2000;
const FINISHED = new Set(["completed", "failed", "cancelled"]);

const $ = (id) => document.getElementById(id);
const jobs = new Map(); // job_id -> {el, summary, stream: AbortController|null, grid: bool}
let timers = [];

function key() { return sessionStorage.getItem(KEY); }

class Unauthorized extends Error {}

async function call(method, path, body) {
  const headers = { "X-API-Key": key() || "" };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  if (response.status === 401) throw new Unauthorized("the key was refused");
  return response;
}

async function json(method, path, body) {
  const response = await call(method, path, body);
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    const reason = payload && payload.detail ? JSON.stringify(payload.detail) : response.statusText;
    throw new Error(`${method} ${path}: ${response.status} ${reason}`);
  }
  return payload;
}

function notice(message) {
  const el = $("notice");
  el.textContent = message || "";
  el.hidden = !message;
}

async function guarded(action) {
  try {
    notice("");
    await action();
  } catch (error) {
    if (error instanceof Unauthorized) { signOut("The key was refused: sign in again."); return; }
    notice(String(error.message || error));
  }
}

// ---------------------------------------------------------------- sign-in

async function signIn(event) {
  event.preventDefault();
  const typed = $("key").value;
  const response = await fetch(API + "/admin/overview", { headers: { "X-API-Key": typed } });
  if (!response.ok) {
    const error = $("sign-in-error");
    error.textContent = response.status === 401 ? "Wrong key." : `Sign-in failed (${response.status}).`;
    error.hidden = false;
    return;
  }
  sessionStorage.setItem(KEY, typed);
  $("key").value = "";
  showDashboard();
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  timers.forEach(clearInterval);
  timers = [];
  for (const job of jobs.values()) if (job.stream) job.stream.abort();
  jobs.clear();
  $("jobs").replaceChildren();
  $("dashboard").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  const error = $("sign-in-error");
  error.textContent = message || "";
  error.hidden = !message;
}

function showDashboard() {
  $("sign-in").hidden = true;
  $("sign-in-error").hidden = true;
  $("dashboard").hidden = false;
  $("who").hidden = false;
  refreshOverview();
  refreshJobs();
  timers.push(setInterval(refreshOverview, OVERVIEW_EVERY_MS));
  timers.push(setInterval(refreshJobs, JOBS_EVERY_MS));
}

// ---------------------------------------------------------------- overview

function show(id, value) { $(id).textContent = value === null || value === undefined ? "–" : value; }

async function refreshOverview() {
  await guarded(async () => {
    const o = await json("GET", "/admin/overview");
    show("dispatch-state", o.dispatch.state);
    $("dispatch-state").dataset.state = o.dispatch.state;
    show("dispatch-mode", `(${o.dispatch.mode}${o.dispatch.stop_in_force ? ", stop in force" : ""})`);
    show("dispatch-rate", o.dispatch.pages_per_second === null ? "none" : `${o.dispatch.pages_per_second} pages/s`);
    show("pages-queue-name", o.pages_queue.name);
    show("pages-depth", o.pages_queue.ready);
    show("pages-consumers", o.pages_queue.consumers);
    show("results-queue-name", o.results_queue.name);
    show("results-depth", o.results_queue.ready);
    show("results-consumers", o.results_queue.consumers);
    show("worker-count", o.pages_queue.consumers);
    const workers = o.pages_queue.consumers || 0;
    show("worker-rate", `${o.pages_per_minute.toFixed(1)} pages/min in all over the last 5 min` +
      (workers ? "" : "; no worker is consuming now"));
    $("worker-rates").replaceChildren(...o.workers.map((w) => {
      const row = document.createElement("tr");
      row.dataset.worker = w.worker;
      for (const value of [w.worker, w.pages_per_minute.toFixed(1), w.failed_pages]) {
        const cell = document.createElement("td");
        cell.textContent = String(value);
        row.append(cell);
      }
      return row;
    }));
    show("page-counts", Object.entries(o.pages_by_status).map(([s, n]) => `${s} ${n}`).join(" · "));
    drawChart(o.throughput);
  });
}

function svg(name, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function drawChart(series) {
  const chart = $("chart");
  // Drawn at the chart's own width, so that its labels are never stretched.
  const W = Math.max(200, Math.round(chart.getBoundingClientRect().width) || 600);
  const H = 160, left = 30, bottom = 18, top = 8;
  chart.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const peak = Math.max(1, ...series.map((p) => p.pages));
  const step = (W - left) / Math.max(1, series.length);
  const parts = [
    svg("line", { class: "axis", x1: left, y1: H - bottom, x2: W, y2: H - bottom }),
    svg("text", { x: 2, y: top + 10 }),
    svg("text", { x: 2, y: H - bottom }),
  ];
  parts[1].textContent = String(peak);
  parts[2].textContent = "0";
  series.forEach((point, i) => {
    const h = ((H - bottom - top) * point.pages) / peak;
    const rect = svg("rect", {
      class: "bar-rect", x: left + i * step + 1, y: H - bottom - h,
      width: Math.max(1, step - 2), height: h,
    });
    const title = svg("title", {});
    title.textContent = `${new Date(point.minute).toLocaleTimeString()}: ${point.pages} pages`;
    rect.append(title);
    parts.push(rect);
  });
  const first = svg("text", { x: left, y: H - 4 });
  first.textContent = "−60 min";
  const last = svg("text", { x: W - 26, y: H - 4 });
  last.textContent = "now";
  parts.push(first, last);
  chart.replaceChildren(...parts);
}

// ---------------------------------------------------------------- jobs

async function refreshJobs() {
  await guarded(async () => {
    const page = await json("GET", "/jobs?limit=50");
    const seen = new Set();
    const list = $("jobs");
    page.jobs.forEach((summary, index) => {
      seen.add(summary.job_id);
      let job = jobs.get(summary.job_id);
      if (!job) {
        job = { el: jobElement(summary), summary, stream: null, grid: false };
        jobs.set(summary.job_id, job);
        setProgress(job, summary, "list");
      }
      job.summary.status = summary.status;
      setStatus(job, summary.status);
      if (!FINISHED.has(summary.status) && !job.stream) follow(summary.job_id);
      if (list.children[index] !== job.el) list.insertBefore(job.el, list.children[index] || null);
    });
    for (const [id, job] of jobs) if (!seen.has(id)) forget(id, job);
    $("no-jobs").hidden = jobs.size > 0;
  });
}

function forget(id, job) {
  if (job.stream) job.stream.abort();
  job.el.remove();
  jobs.delete(id);
}

function button(label, onClick, cls) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (cls) b.className = cls;
  b.addEventListener("click", () => guarded(onClick));
  return b;
}

function jobElement(summary) {
  const id = summary.job_id;
  const li = document.createElement("li");
  li.className = "job";
  li.dataset.jobId = id;
  li.innerHTML = `
    <div class="job-head"><span class="job-name"></span><span class="status"></span>
      <span class="muted job-id"></span></div>
    <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100"
         aria-valuenow="0"><div></div></div>
    <div class="progress-text"></div>
    <div class="row controls"></div>
    <div class="pages" hidden></div>`;
  li.querySelector(".job-name").textContent = summary.filename;
  li.querySelector(".job-id").textContent = `${id.slice(0, 8)} · ${summary.tenant}`;
  const controls = li.querySelector(".controls");
  const priority = document.createElement("span");
  priority.className = "priority row";
  priority.innerHTML = `<input type="number" min="0" max="9" value="0" aria-label="priority">`;
  priority.append(button("Set priority", async () => {
    const n = Number(priority.querySelector("input").value);
    const changed = await json("PUT", `/admin/jobs/${id}/priority`, { priority: n });
    priority.querySelector(".priority-set").textContent =
      `priority ${changed.priority} (${changed.pending_pages} pending pages)`;
  }), Object.assign(document.createElement("span"), { className: "priority-set muted" }));
  controls.append(
    button("Start", async () => { await json("POST", `/admin/start/${id}`); refreshOverview(); }, "start"),
    button("Delete", async () => {
      await json("DELETE", `/admin/delete/job/${id}`);
      const job = jobs.get(id);
      if (job) forget(id, job);
      $("no-jobs").hidden = jobs.size > 0;
    }, "danger delete"),
    button("Pages", async () => toggleGrid(id), "pages-toggle"),
    priority,
  );
  return li;
}

function setStatus(job, status) {
  const el = job.el.querySelector(".status");
  el.textContent = status;
  el.className = `status ${status}`;
  job.el.dataset.status = status;
}

function setProgress(job, counts, source) {
  const total = counts.total_page_number || 0;
  const finished = (counts.completed_pages || 0) + (counts.failed_pages || 0) +
    (counts.cancelled_pages || 0);
  const percent = total ? Math.round((100 * finished) / total) : 0;
  const bar = job.el.querySelector(".progress");
  bar.setAttribute("aria-valuenow", String(percent));
  bar.dataset.source = source;
  bar.firstElementChild.style.width = `${percent}%`;
  job.el.querySelector(".progress-text").textContent =
    `${percent}% · ${counts.completed_pages || 0} done, ${counts.failed_pages || 0} failed of ${total}`;
}

// One job's events: fetch() with the key in a header, the SSE body parsed by hand.
async function follow(id) {
  const job = jobs.get(id);
  if (!job) return;
  const controller = new AbortController();
  job.stream = controller;
  try {
    const response = await fetch(`${API}/jobs/${id}/events`, {
      headers: { "X-API-Key": key() || "", Accept: "text/event-stream" },
      signal: controller.signal,
    });
    if (!response.ok || !response.body) throw new Error(`events: ${response.status}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        onEvent(id, buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return;
  } finally {
    const current = jobs.get(id);
    // The stream ended (a terminal event, or the server went away): the next list refresh
    // opens it again if the job is still unfinished.
    if (current && current.stream === controller) current.stream = null;
  }
}

function onEvent(id, block) {
  const data = block.split("\n").filter((l) => l.startsWith("data:"))
    .map((l) => l.slice(5).trimStart()).join("\n");
  if (!data) return;
  const event = JSON.parse(data);
  const job = jobs.get(id);
  if (!job) return;
  setProgress(job, event, "events");
  setStatus(job, event.status);
  if (job.grid && event.page_number) {
    const cell = job.el.querySelector(`.cell[data-page="${event.page_number}"]`);
    if (cell) cell.className = `cell ${event.type === "page.failed" ? "failed" : "done"}`;
  }
  if (event.type === "job.deleted") forget(id, job);
}

// ---------------------------------------------------------------- page grid and thumbnails

async function toggleGrid(id) {
  const job = jobs.get(id);
  if (!job) return;
  const grid = job.el.querySelector(".pages");
  job.grid = !job.grid;
  grid.hidden = !job.grid;
  if (!job.grid) return;
  const detail = await json("GET", `/admin/job/${id}`);
  grid.replaceChildren(...detail.pages.map((page) => {
    const cell = document.createElement("span");
    cell.className = `cell ${page.status}`;
    cell.dataset.page = page.page_number;
    cell.title = `page ${page.page_number}: ${page.status}`;
    cell.addEventListener("mouseenter", (e) => showThumb(id, page.page_number, e));
    cell.addEventListener("mouseleave", hideThumb);
    return cell;
  }));
}

const thumbs = new Map(); // "job/page" -> blob URL
let hovered = null;

async function showThumb(id, number, event) {
  const name = `${id}/${number}`;
  hovered = name;
  const box = $("thumb");
  box.style.left = `${Math.min(event.clientX + 12, window.innerWidth - 210)}px`;
  box.style.top = `${Math.max(4, event.clientY - 140)}px`;
  let url = thumbs.get(name);
  if (!url) {
    // <img> cannot send the key: the thumbnail is fetched with it and shown from a blob URL.
    const response = await call("GET", `/jobs/${id}/pages/${number}/thumbnail`);
    if (!response.ok) return;
    url = URL.createObjectURL(await response.blob());
    thumbs.set(name, url);
  }
  if (hovered !== name) return;
  box.querySelector("img").src = url;
  box.hidden = false;
}

function hideThumb() { hovered = null; $("thumb").hidden = true; }

// ---------------------------------------------------------------- wiring

$("sign-in-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", () => signOut(""));
$("start-all").addEventListener("click", () => guarded(async () => {
  await json("POST", "/admin/start");
  await refreshOverview();
}));
$("stop-all").addEventListener("click", () => guarded(async () => {
  await json("POST", "/admin/stop");
  await refreshOverview();
}));
$("rate-form").addEventListener("submit", (event) => {
  event.preventDefault();
  guarded(async () => {
    const raw = $("rate").value.trim();
    await json("PUT", "/admin/dispatch/rate", { pages_per_second: raw === "" ? null : Number(raw) });
    await refreshOverview();
  });
});
if (key()) showDashboard();
