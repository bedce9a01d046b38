// The Train page's live view of a running run (a Streamlit components-v2 component, mounted by
// cifar_app/web/ui.py: live_progress, live_figure). It asks the server's read-only routes (cifar_app/web/webapp.py) for new
// data and patches the page in place, so a tick that brings nothing new costs the browser next to
// nothing, where a Streamlit fragment re-run re-renders its elements each time.
//
// Every view asks GET data.path (the route's address, written once in cifar_app/web/webapp.py), with
// the page session's route key (data.key, in the header data.key_header) when the server is private.
// data.view === "progress": progress bar + line + note, from GET lab/runs/{run}/live every
//   data.every_ms; when the run logs a new epoch (or its probe record) or changes state, a trigger
//   re-runs the fragment around it once (new epoch figures; a finished run is then drawn without
//   this view).
// data.view === "figure": the figure data.figure ("epochs" or "batches"), from
//   GET lab/runs/{run}/figures/{figure} at most every data.every_ms, and only when the progress view
//   has seen new records of its kind (an event on window), applied with Plotly.react (updated in
//   place, never re-mounted); an unchanged figure is not sent again (the request names the version
//   it has). plotly.js (served by the app, cached) is loaded once, when the view mounts.
// data.view === "key": draws nothing; POSTs data.path (lab/session) with the session's route key in
//   its header, and the server sets the HttpOnly key cookie (page scripts cannot read it), so a
//   reload or a new tab keeps the access the token gave, and the routes see it on every request.
// data.view === "watch": draws nothing; asks GET data.path every data.every_ms and re-runs the
//   fragment around it once when the reply's version differs from data.version (a running sweep on
//   the Experiments page).
// A line that has not changed for 3 ticks (a queued run, an epoch's test pass) asks every 3 s until
// it changes again; a hidden tab asks 10x less often. On a server without the routes the progress
// line falls back to re-running its fragment every 5 s; a deleted run re-runs it once; other
// failures (a restarting server, a damaged log) are shown and retried with back-off.

const HIDDEN_FACTOR = 10;
const QUIET_TICKS = 3, QUIET_EVERY_MS = 3000;  // a line unchanged 3 times asks every 3 s
const NEWS = "cifar-lab-live-news";  // progress view -> figure views: records logged so far
const views = new WeakMap();

function url(data, path) {
  const base = data.base ? `/${data.base}` : "";
  return `${window.location.origin}${base}/${path}`;
}

function loadPlotly(src) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__labPlotly) {
    window.__labPlotly = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => { window.__labPlotly = null; reject(new Error(`could not load ${src}`)); };
      document.head.appendChild(s);
    });
  }
  return window.__labPlotly;
}

function build(root, view) {
  let el = root.querySelector(".lab-live");
  if (el) return el;
  el = document.createElement("div");
  el.className = "lab-live";
  el.innerHTML = {
    progress: `<div class="lab-text" data-testid="labProgressText"></div>
               <div class="lab-bar"><div class="lab-fill"></div></div>
               <div class="lab-note"></div><div class="lab-error"></div><div class="lab-status"></div>`,
    figure: `<div class="lab-status"></div><div class="lab-chart" data-testid="labFigure"></div>`,
    watch: `<div class="lab-status"></div>`,
  }[view];
  root.appendChild(el);
  return el;
}

function show(element, text) {
  element.textContent = text || "";
  element.hidden = !text;
}

function showSnapshot(el, snap) {
  const key = JSON.stringify(snap);
  if (el.__shown === key) return false;  // nothing new: leave the page alone
  el.__shown = key;
  el.querySelector(".lab-text").textContent = snap.damaged ? `damaged: ${snap.damaged}` : snap.text;
  el.querySelector(".lab-fill").style.width = `${(100 * snap.fraction).toFixed(2)}%`;
  show(el.querySelector(".lab-note"), snap.note);
  show(el.querySelector(".lab-error"), snap.error && `${snap.state}: ${snap.error}`);
  return true;
}

// GET one of the app's live routes: its JSON, or null for "nothing new" (204, 304). A reply that is
// not JSON comes from a server without the routes (Streamlit answers unknown paths with its page).
async function getJson(data, path) {
  const headers = data.key ? { [data.key_header]: data.key } : {};
  const r = await fetch(url(data, path), { cache: "no-store", headers });
  if (r.status === 204 || r.status === 304) return null;
  if (!(r.headers.get("content-type") || "").includes("application/json")) {
    throw Object.assign(new Error("this server has no live routes"), { fallback: true });
  }
  const body = await r.json();
  if (!r.ok) {
    throw Object.assign(new Error(body.error || `the server answered ${r.status}`),
                        { gone: r.status === 404 });
  }
  return body;
}

async function tickProgress(v) {
  const { data, el } = v;
  const snap = await getJson(data, data.path);
  v.quiet = showSnapshot(el, snap) ? 0 : (v.quiet || 0) + 1;
  window.dispatchEvent(new CustomEvent(NEWS, {
    detail: { run: data.run, epochs: snap.epochs, batches: snap.batches } }));
  const seen = `${snap.state}/${snap.epochs}/${snap.probes}`;
  if (seen !== `${data.state}/${data.epochs}/${data.probes}` && seen !== v.triggered) {
    v.triggered = seen;  // once per change; the re-run brings new data and resets it
    v.setTriggerValue("changed", seen);
  }
}

async function tickFigure(v) {
  const { data, el } = v;
  const wanted = v.latest;  // records logged, as the progress line last saw them
  if (wanted !== undefined && wanted === v.fetchedFor) return;  // nothing new to ask for
  const q = new URLSearchParams({ smoothing: data.smoothing, have: v.version || "" });
  const reply = await getJson(data, `${data.path}?${q}`);
  if (reply === null) { v.fetchedFor = wanted; return; }
  const { version, figure } = reply;
  const Plotly = await loadPlotly(url(data, data.plotly));
  const chart = el.querySelector(".lab-chart");
  const style = getComputedStyle(chart);  // the app's theme: text colour and font
  const layout = Object.assign({}, figure.layout, {
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: Object.assign({}, figure.layout.font, { color: style.color, family: style.fontFamily }),
  });
  if (figure.layout.height) chart.style.height = `${figure.layout.height}px`;
  await Plotly.react(chart, figure.data, layout, { displaylogo: false, responsive: true });
  v.version = version;
  v.fetchedFor = wanted;
}

async function tickWatch(v) {
  const { data } = v;
  const { version } = await getJson(data, data.path);
  if (version !== data.version && version !== v.triggered) {
    v.triggered = version;
    v.setTriggerValue("changed", "news");
  }
}

const TICKS = { progress: tickProgress, figure: tickFigure, watch: tickWatch };

function schedule(v, delay) {
  clearTimeout(v.timer);
  if (!v.running) return;
  v.timer = setTimeout(async () => {
    const progress = v.data.view === "progress";
    const status = v.el.querySelector(".lab-status");
    let next = v.data.every_ms;
    try {
      await TICKS[v.data.view](v);
      v.failures = 0;
      show(status, "");
      if (progress && v.quiet >= QUIET_TICKS) next = QUIET_EVERY_MS;
    } catch (e) {
      if (e.fallback) {  // the progress line falls back to re-running its fragment
        show(status, v.data.view === "figure"
          ? "Live figures need the server that `streamlit run dashboard.py` starts."
          : "Live updates need the server that `streamlit run dashboard.py` starts; refreshing every 5 s.");
        if (v.data.view === "figure") return;
        v.setTriggerValue("changed", `poll-${Date.now()}`);
        next = 5000;
      } else if (e.gone) {  // the run was deleted: let the page redraw without it
        show(status, `Gone: ${e.message}.`);
        if (v.data.view !== "figure") v.setTriggerValue("changed", "gone");
        return;
      } else {  // server restarting, network down, a damaged log: retry, less and less often
        v.failures = (v.failures || 0) + 1;
        show(status, `Live updates paused (${e.message}); retrying.`);
        next = Math.min(30000, v.data.every_ms * 2 ** v.failures);
      }
    }
    schedule(v, document.hidden ? next * HIDDEN_FACTOR : next);
  }, delay);
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  if (data.view === "key") {  // a session that gave the token: the server sets the HttpOnly key cookie
    fetch(url(data, data.path), { method: "POST", headers: { [data.key_header]: data.key },
                                  credentials: "same-origin" }).catch(() => {});
    return () => {};
  }
  let v = views.get(parentElement);
  const changed = !v || v.data.run !== data.run || v.data.smoothing !== data.smoothing;
  if (!v) {
    v = { el: build(parentElement, data.view) };
    views.set(parentElement, v);
    if (data.view === "progress") showSnapshot(v.el, data.snapshot);
    if (data.view === "figure") loadPlotly(url(data, data.plotly)).catch(() => {});  // before it is needed
  }
  if (changed) v.version = v.fetchedFor = null;
  v.data = data;
  v.setTriggerValue = setTriggerValue;
  v.triggered = null;
  v.running = true;
  schedule(v, data.view === "figure" && changed ? 0 : data.every_ms);
  if (v.unlisten) v.unlisten();  // called again with new data: one set of listeners per view
  const wake = () => { if (!document.hidden) schedule(v, 0); };
  const news = (e) => { if (e.detail.run === v.data.run) v.latest = e.detail[v.data.figure]; };
  document.addEventListener("visibilitychange", wake);
  if (data.view === "figure") window.addEventListener(NEWS, news);
  v.unlisten = () => {
    document.removeEventListener("visibilitychange", wake);
    window.removeEventListener(NEWS, news);
    v.unlisten = null;
  };
  return () => {
    v.running = false;
    clearTimeout(v.timer);
    if (v.unlisten) v.unlisten();
  };
}
