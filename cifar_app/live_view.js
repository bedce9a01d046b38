// The Train page's live view of a running run (a Streamlit components-v2 component, see
// cifar_app/ui.py: live_view). It asks the server's read-only routes (cifar_app/webapp.py) for new
// data and patches the page in place, so a tick that brings nothing new costs the browser next to
// nothing, where a Streamlit fragment re-run re-renders its elements each time.
//
// data.view === "progress": progress bar + line + note, from GET lab/runs/{run}/live every
//   data.every_ms; when the run logs a new epoch or changes state, a trigger re-runs the fragment
//   around it once (new epoch figures; a finished run is then drawn without this view).
// data.view === "figure": the figure data.figure ("epochs" or "batches"), from
//   GET lab/runs/{run}/figures/{figure} every data.every_ms, applied with Plotly.react (updated in
//   place, never re-mounted); an unchanged figure is not sent again (the request names the version
//   it has). plotly.js (served by the app, cached) is loaded once, when the view mounts.
// A hidden tab polls 10x less often. A route that answers 404 (a server without them) falls back to
// re-running the page every 5 s, as before; a lost connection is retried with back-off.

const HIDDEN_FACTOR = 10;
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
  el.innerHTML = view === "progress"
    ? `<div class="lab-text" data-testid="labProgressText"></div>
       <div class="lab-bar"><div class="lab-fill"></div></div>
       <div class="lab-note"></div><div class="lab-error"></div>`
    : `<div class="lab-note"></div><div class="lab-chart" data-testid="labFigure"></div>`;
  root.appendChild(el);
  return el;
}

function showSnapshot(el, snap) {
  const text = snap.damaged ? `damaged: ${snap.damaged}` : snap.text;
  el.querySelector(".lab-text").textContent = text;
  el.querySelector(".lab-fill").style.width = `${(100 * snap.fraction).toFixed(2)}%`;
  const note = el.querySelector(".lab-note");
  note.textContent = snap.note || "";
  note.hidden = !snap.note;
  const error = el.querySelector(".lab-error");
  error.textContent = snap.error ? `${snap.state}: ${snap.error}` : "";
  error.hidden = !snap.error;
}

function say(el, message) {
  const note = el.querySelector(".lab-note");
  note.textContent = message || "";
  note.hidden = !message;
}

async function tickProgress(v) {
  const { data, el } = v;
  const r = await fetch(url(data, `lab/runs/${data.run}/live`), { cache: "no-store" });
  if (r.status === 404) throw Object.assign(new Error("no live route"), { fallback: true });
  if (!r.ok) throw new Error(`the server answered ${r.status}`);
  const snap = await r.json();
  showSnapshot(el, snap);
  const seen = `${snap.state}/${snap.epochs}`;
  if (seen !== `${data.state}/${data.epochs}` && seen !== v.triggered) {
    v.triggered = seen;  // once per change; the re-run brings new data and resets it
    v.setTriggerValue("changed", seen);
  }
}

async function tickFigure(v) {
  const { data, el } = v;
  const q = new URLSearchParams({ smoothing: data.smoothing, have: v.version || "" });
  const r = await fetch(url(data, `lab/runs/${data.run}/figures/${data.figure}?${q}`),
                        { cache: "no-store" });
  if (r.status === 404) throw Object.assign(new Error("no live route"), { fallback: true });
  if (r.status === 304 || r.status === 204) return;
  if (!r.ok) throw new Error(`the server answered ${r.status}`);
  const { version, figure } = await r.json();
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
}

function schedule(v, delay) {
  clearTimeout(v.timer);
  if (!v.running) return;
  v.timer = setTimeout(async () => {
    const tick = v.data.view === "progress" ? tickProgress : tickFigure;
    let next = v.data.every_ms;
    try {
      await tick(v);
      v.failures = 0;
      if (v.data.view === "progress" && v.lost) say(v.el, "");
      v.lost = false;
    } catch (e) {
      if (e.fallback) {  // a server without the live routes: re-run the page instead
        say(v.el, "Live updates need the server started by `streamlit run dashboard.py`; " +
                  "refreshing every 5 s instead.");
        if (v.data.view === "progress") v.setTriggerValue("changed", `poll-${Date.now()}`);
        next = 5000;
      } else {
        v.failures = (v.failures || 0) + 1;
        v.lost = true;
        say(v.el, `Live updates paused (${e.message}); retrying.`);
        next = Math.min(30000, v.data.every_ms * 2 ** v.failures);
      }
    }
    schedule(v, document.hidden ? next * HIDDEN_FACTOR : next);
  }, delay);
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let v = views.get(parentElement);
  const changed = !v || v.data.run !== data.run || v.data.smoothing !== data.smoothing;
  if (!v) {
    v = { el: build(parentElement, data.view) };
    views.set(parentElement, v);
    if (data.view === "progress") showSnapshot(v.el, data.snapshot);
    else loadPlotly(url(data, data.plotly)).catch(() => {});  // before it is needed
  }
  if (changed) v.version = null;
  v.data = data;
  v.setTriggerValue = setTriggerValue;
  v.triggered = null;
  v.running = true;
  schedule(v, data.view === "figure" && changed ? 0 : data.every_ms);
  const wake = () => { if (!document.hidden) schedule(v, 0); };
  document.addEventListener("visibilitychange", wake);
  return () => {
    v.running = false;
    clearTimeout(v.timer);
    document.removeEventListener("visibilitychange", wake);
  };
}
