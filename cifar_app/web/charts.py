"""Plotly figures, each a pure function from data to ``go.Figure`` (no I/O, no Streamlit)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from cifar_app.core import landscape, norms
from cifar_app.core.records import BatchStats, EpochStats
from cifar_app.core.series import MAX_POINTS, decimate, smooth
from cifar_app.store.states import RunState
from cifar_app.web.text import for_plotly as plain

NORM_COLORS: dict[str, str] = norms.COLORS  # one fixed colour per normalization (norms.REGISTRY)
NORM_LABELS: dict[str, str] = norms.LABELS
SHORT_TO_NORM: dict[str, str] = {n.short: name for name, n in norms.REGISTRY.items()}
HOUSE_TEMPLATE = "plotly_white"


def _house() -> None:
    """Make the house template Plotly's default. Plotly gives a new figure its default template,
    taken as already validated; naming the template in the layout instead validated all of it again,
    16 ms a figure (Compare drew four at each run of its page). Checked at each figure, because
    importing streamlit sets the default to Streamlit's own placeholder template; set only when it
    differs, because setting it validates the template too."""
    if pio.templates.default != HOUSE_TEMPLATE:
        pio.templates.default = HOUSE_TEMPLATE


def _figure(*args, **kwargs) -> go.Figure:
    """``go.Figure`` in the house style (``_house``)."""
    _house()
    return go.Figure(*args, **kwargs)


def _subplots(**kwargs) -> go.Figure:
    """``make_subplots`` in the house style (``_house``)."""
    _house()
    return make_subplots(**kwargs)


def warm() -> None:
    """Do once what a process's first figure does beyond the next ones (about 0.1 s on the lab's VM:
    the house template's validation, the imports of a line chart's validators), so that a server's
    first visitor to a page with figures does not wait for it (``app.server`` calls this)."""
    _figure(go.Scatter(x=[0], y=[0], mode="lines+markers", line=dict(dash="dash"))).update_layout(
        title="warm").to_plotly_json()


def wrap_title(text: str, width: int, lines: int = 2) -> str:
    """``text`` broken at spaces into at most ``lines`` lines of about ``width`` characters (Plotly
    ``<br>``), the last one cut with an ellipsis: a panel title that fits its panel."""
    import textwrap

    width = max(8, width)
    parts = textwrap.wrap(text, width) or [""]
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][:max(1, width - 1)].rstrip() + "…"
    return "<br>".join(plain(p) for p in parts)  # the text as text: only the breaks are markup


def _panel_grid(series: Sequence[dict], cols: int, chars: int, **kwargs) -> tuple[go.Figure, int]:
    """Subplots for one panel per run, ``cols`` to a row, each titled with its run's label wrapped to
    ``chars`` characters a line (two lines at most), so neighbouring titles never run into each
    other. Returns the figure and its number of rows."""
    n = max(1, len(series))
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    titles = [wrap_title(s["label"], chars) for s in series] or [""]
    fig = _subplots(rows=rows, cols=cols, subplot_titles=titles,  # plotly's bound: 1 / (cols - 1)
                    horizontal_spacing=min(0.06, 0.5 / (cols - 1)) if cols > 1 else 0.06,
                    vertical_spacing=0.36 / rows if rows > 1 else 0.0, **kwargs)
    fig.update_annotations(font_size=12)
    return fig, rows


def _layout(fig: go.Figure, title: str, height: int = 360, uirevision: str | None = None) -> go.Figure:
    """The house style; every trace's name (a run's label, a class, a file) shown as text."""
    for trace in fig.data:
        if trace.name:
            trace.name = plain(trace.name)
        if getattr(trace, "legendgroup", None):
            trace.legendgroup = plain(trace.legendgroup)
    fig.update_layout(title=title, height=height, margin=dict(l=50, r=20, t=50, b=40),
                      legend=dict(orientation="h", y=-0.2),
                      uirevision=uirevision)  # keeps the user's zoom across live updates
    return fig


def training_curves(epochs: Sequence[EpochStats], norm: str, uirevision: str = "curves") -> go.Figure:
    """Loss (left) and accuracy (right) per epoch, train dashed and test solid.

    The train loss shown is the plain cross-entropy when the log has it (comparable to the test
    loss); older logs only have the label-smoothed loss, and the trace's name says so."""
    color = NORM_COLORS.get(norm, "#444")
    fig = _subplots(rows=1, cols=2, subplot_titles=("loss (cross-entropy)", "accuracy (%)"))
    x = [e.epoch for e in epochs]
    plain = all(e.comparable_train_loss[1] for e in epochs)
    train_loss = [e.comparable_train_loss[0] if plain else e.train_loss for e in epochs]
    traces = (
        (1, "train loss" if plain else "train loss (with label smoothing: not comparable)", train_loss,
         "dash"),
        (1, "test loss", [e.test_loss for e in epochs], "solid"),
        (2, "train acc (augmented)", [100 * e.train_acc for e in epochs], "dash"),
        (2, "test acc", [100 * e.test_acc for e in epochs], "solid"),
    )
    for col, name, y, dash in traces:
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name,
                                 line=dict(color=color, dash=dash)), row=1, col=col)
    fig.update_xaxes(title_text="epoch", tick0=1, dtick=_epoch_dtick(len(x)))
    return _layout(fig, "", uirevision=uirevision)


def _epoch_dtick(n: int) -> int:
    """Integer tick spacing for an epoch axis of ``n`` epochs (never 0.5)."""
    return max(1, -(-n // 10))


def batch_curves(batches: Sequence[BatchStats], norm: str, smoothing: float = 0.9,
                 max_points: int = MAX_POINTS, uirevision: str = "batch") -> go.Figure:
    """Per-batch training loss (raw, faint, and smoothed over all steps) above the learning rate,
    against the global step, in one figure. Each trace is decimated to ``max_points`` (first, last,
    min and max of each stretch kept), so the figure stays small however long the run."""
    color = NORM_COLORS.get(norm, "#444")
    steps = np.fromiter((b.step for b in batches), np.float64, len(batches))
    losses = np.fromiter((b.loss for b in batches), np.float64, len(batches))
    lrs = np.fromiter((b.lr for b in batches), np.float64, len(batches))
    fig = _subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06)
    for row, name, y, style in (
        (1, "loss per batch", losses, dict(line=dict(color=color, width=1), opacity=0.25)),
        (1, f"smoothed ({smoothing:.2f})", smooth(losses, smoothing), dict(line=dict(color=color, width=2))),
        (2, "learning rate", lrs, dict(line=dict(color="#9467bd"))),
    ):
        x, yy = decimate(steps, y, max_points)
        fig.add_trace(go.Scatter(x=x, y=yy, mode="lines", name=name, **style), row=row, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_yaxes(title_text="loss (label-smoothed)", row=1, col=1)
    fig.update_yaxes(title_text="learning rate", row=2, col=1)
    return _layout(fig, "training loss per batch and learning rate", height=480, uirevision=uirevision)


COMPARE_PANELS = (("test_acc", "test accuracy (%)"), ("test_loss", "test loss"),
                  ("train_acc", "train accuracy (%)"), ("train_loss", "train loss (cross-entropy)"))


def compare_grid(runs: Sequence[dict], uirevision: str = "compare") -> go.Figure:
    """The curves of several runs, one panel per metric of ``COMPARE_PANELS``, two to a row, in one
    figure (one legend: a click on a run shows or hides it in every panel).

    runs: dicts with ``label``, ``norm``, ``epochs`` (``EpochStats``) and optionally ``id`` (then a
    run hidden in the legend stays hidden when the selection changes around it, not the run that
    takes its place; Plotly keeps such state per trace ``uid``). Accuracies are shown in
    %; the train loss is the plain training cross-entropy where the log has it, and the legend
    says which runs show their label-smoothed loss instead. Colour by normalization; a second run
    of the same norm gets a dash pattern."""
    fig = _subplots(rows=2, cols=2, subplot_titles=[title for _, title in COMPARE_PANELS],
                    horizontal_spacing=0.08, vertical_spacing=0.14)
    dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
    seen: dict[str, int] = {}
    for k, r in enumerate(runs):
        n = seen.get(r["norm"], 0)
        seen[r["norm"]] = n + 1
        line = dict(color=NORM_COLORS.get(r["norm"], "#444"), dash=dashes[n % len(dashes)])
        x = [e.epoch for e in r["epochs"]]
        for i, (metric, _) in enumerate(COMPARE_PANELS):
            if metric == "train_loss":
                y = [e.comparable_train_loss[0] for e in r["epochs"]]
                smoothed = not all(e.comparable_train_loss[1] for e in r["epochs"])
            else:
                y = [getattr(e, metric) * (100 if metric.endswith("acc") else 1) for e in r["epochs"]]
                smoothed = False
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", line=line, legendgroup=str(k),
                                     name=r["label"] + (" (label-smoothed loss)" if smoothed else ""),
                                     showlegend=i == 0 or smoothed,
                                     uid=f"{r['id']}/{metric}" if "id" in r else None),
                          row=i // 2 + 1, col=i % 2 + 1)
    longest = max((len(r["epochs"]) for r in runs), default=1)
    fig.update_xaxes(tick0=1, dtick=_epoch_dtick(longest))
    fig.update_xaxes(title_text="epoch", row=2)
    fig.update_annotations(font_size=13)
    return _layout(fig, "", height=760, uirevision=uirevision).update_layout(
        margin=dict(l=50, r=20, t=30, b=40), legend=dict(orientation="h", y=-0.1))


def confusion_heatmap(cm: np.ndarray, classes: Sequence[str]) -> go.Figure:
    """Confusion matrix (rows true, columns predicted) with counts.

    Plotly heatmaps emit no selection events, so an invisible square marker sits on every cell:
    clicking a cell selects that point, whose ``x`` is the predicted and ``y`` the true class.
    """
    names = list(classes)
    cells_x = [p for _ in names for p in names]
    cells_y = [t for t in names for _ in names]
    fig = _figure([
        go.Heatmap(z=cm, x=names, y=names, colorscale="Blues", text=cm, texttemplate="%{text}",
                   hoverinfo="skip"),
        go.Scatter(x=cells_x, y=cells_y, mode="markers", showlegend=False,
                   customdata=np.asarray(cm).reshape(-1),
                   marker=dict(symbol="square", size=30, color="rgba(0,0,0,0)"),
                   hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata} images<extra></extra>"),
    ])
    fig.update_xaxes(title_text="predicted", side="bottom")
    fig.update_yaxes(title_text="true", autorange="reversed")
    fig.update_layout(clickmode="event+select")
    return _layout(fig, "confusion matrix (click a cell to filter the grid)", height=480)


def per_class_bars(acc: np.ndarray, classes: Sequence[str], norm: str) -> go.Figure:
    """Per-class accuracy in %, one bar per class."""
    fig = _figure(go.Bar(x=list(classes), y=np.asarray(acc) * 100,
                           marker_color=NORM_COLORS.get(norm, "#444"),
                           text=[f"{a * 100:.1f}" for a in acc], textposition="outside"))
    fig.update_yaxes(title_text="accuracy (%)", range=[0, 105])
    return _layout(fig, "per-class accuracy", height=340)


def topk_bars(top_k: Sequence[tuple[str, float]], color: str = "#1f77b4", title: str = "") -> go.Figure:
    """Horizontal bars of the top-k classes, highest on top, probabilities in %."""
    names = [c for c, _ in top_k][::-1]
    probs = [p * 100 for _, p in top_k][::-1]
    fig = _figure(go.Bar(x=probs, y=names, orientation="h", marker_color=color,
                           text=[f"{p:.1f}%" for p in probs], textposition="auto"))
    fig.update_xaxes(range=[0, 100], title_text="probability (%)")
    fig.update_layout(showlegend=False)
    fig = _layout(fig, wrap_title(title, 30), height=240)
    fig.update_layout(margin=dict(t=60), title_font_size=14)  # a two-line title fits above the bars
    return fig


def norm_axes_figure() -> go.Figure:
    """Which axes of an activation (N, C, H*W) each normalization averages over, as in the
    GroupNorm paper's figure: one panel per norm, shaded cells share one mean/std."""
    norms = ["batch", "layer", "group"]
    titles = ["BatchNorm: per channel,<br>over N, H, W", "LayerNorm: per sample,<br>over C, H, W",
              "GroupNorm: per sample & group,<br>over C/G, H, W"]
    fig = _subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.08)
    n, c = 4, 8
    for i, norm in enumerate(norms, start=1):
        z = np.zeros((c, n))
        if norm == "batch":
            z[2, :] = 1          # one channel, all samples
        elif norm == "layer":
            z[:, 1] = 1          # one sample, all channels
        else:
            z[2:4, 1] = 1        # one sample, one group of channels
        fig.add_trace(go.Heatmap(z=z, colorscale=[[0, "#eeeeee"], [1, NORM_COLORS[norm]]],
                                 showscale=False, xgap=2, ygap=2, hoverinfo="skip"), row=1, col=i)
        fig.update_xaxes(title_text="N (samples)", showticklabels=False, row=1, col=i)
        fig.update_yaxes(title_text="C (channels)" if i == 1 else None, showticklabels=False,
                         row=1, col=i)
    fig.update_layout(height=300, margin=dict(l=40, r=20, t=70, b=40))
    return fig


def sweep_plot(points: Sequence, x: str, series: str = "norm", log_x: bool = False,
               title: str = "") -> go.Figure:
    """Final test accuracy (%) against the setting ``x``, one line per value of ``series``
    (coloured by normalization). ``points``: ``experiments.PointStatus``. Failed (diverged) points
    are marked with a red cross at the bottom of the plot; unfinished points are left out."""
    fig = _figure()
    groups: dict[str, list] = {}
    for p in points:
        groups.setdefault(str(p.settings.get(series)), []).append(p)
    for name, pts in groups.items():
        done = sorted((p for p in pts if p.state == RunState.COMPLETED and p.final_test_acc is not None),
                      key=lambda p: p.settings[x])
        color = NORM_COLORS.get(name, "#444")
        if x == "groups" and series == "norm" and name in norms.REGISTRY and not norms.get(name).uses_groups:
            if done:  # G means nothing to this norm (e.g. IN, G = C): its mean as a level line
                mean = 100 * sum(p.final_test_acc for p in done) / len(done)
                fig.add_hline(y=mean, line_dash="dot", line_color=color,
                              annotation_text=f"{NORM_LABELS.get(name, name)}: {mean:.2f}%")
            continue
        fig.add_trace(go.Scatter(
            x=[p.settings[x] for p in done], y=[100 * p.final_test_acc for p in done],
            mode="lines+markers", name=NORM_LABELS.get(name, name), line=dict(color=color),
            customdata=[p.run_id for p in done], hovertemplate=f"{x}=%{{x}}<br>%{{y:.2f}}%<extra>"
            f"{NORM_LABELS.get(name, name)}</extra>"))
        failed = [p for p in pts if p.state == RunState.FAILED]
        if failed:
            fig.add_trace(go.Scatter(
                x=[p.settings[x] for p in failed], y=[10.0] * len(failed), mode="markers",
                name=f"{NORM_LABELS.get(name, name)}: failed / diverged",
                marker=dict(symbol="x", size=12, color=color, line=dict(width=2, color="#d62728")),
                hovertext=[plain(p.error or str(RunState.FAILED)) for p in failed], hoverinfo="text+x"))
    values = sorted({p.settings[x] for p in points if isinstance(p.settings.get(x), (int, float))})
    fig.update_xaxes(title_text=x, type="log" if log_x else None,
                     tickvals=values if log_x else None)  # the grid's own values, not 2, 3, 4...
    fig.update_yaxes(title_text="final test accuracy (%)")
    return _layout(fig, title, height=420, uirevision=title or x)


def group_bars(stats: Sequence) -> go.Figure:
    """Mean final test accuracy (%) per group with ± 1 std error bars (``experiments.GroupStats``)."""
    fig = _figure(go.Bar(
        x=[NORM_LABELS.get(g.group, g.group) for g in stats], y=[100 * g.mean for g in stats],
        error_y=dict(type="data", array=[100 * g.std for g in stats], visible=True),
        marker_color=[NORM_COLORS.get(g.group, "#444") for g in stats],
        text=[f"{100 * g.mean:.2f} ± {100 * g.std:.2f} (n={g.n})" for g in stats], textposition="outside"))
    lo = min((100 * (g.mean - g.std) for g in stats), default=0)
    fig.update_yaxes(title_text="final test accuracy (%)", range=[max(0, lo - 5), 100])
    return _layout(fig, "mean ± std over seeds", height=380)


def inside_bands(series: Sequence[dict], layer: str, where: str = "post") -> go.Figure:
    """One panel per run side by side: the activation percentiles of ``layer`` over epochs, before
    (``where="pre"``) or after (``"post"``) its normalization, as in the GroupNorm paper's Fig. 6:
    a light band p1..p99, a darker band p20..p80 and the median line.

    series: dicts with ``label``, ``norm`` and ``records`` (``Run.inside()``, epoch 0 = init)."""
    n = max(1, len(series))
    fig, _ = _panel_grid(series, cols=n, chars=100 // n, shared_yaxes=True)
    for col, s in enumerate(series, start=1):
        recs = [r for r in s["records"] if layer in r["layers"]]
        x = [r["epoch"] for r in recs]
        stat = [r["layers"][layer][where] for r in recs]
        color = NORM_COLORS.get(s["norm"], "#444")
        for lo, hi, alpha in (("p1", "p99", 0.15), ("p20", "p80", 0.35)):
            fig.add_trace(go.Scatter(x=x, y=[v[hi] for v in stat], mode="lines", line=dict(width=0),
                                     showlegend=False, hoverinfo="skip"), row=1, col=col)
            fig.add_trace(go.Scatter(x=x, y=[v[lo] for v in stat], mode="lines", line=dict(width=0),
                                     fill="tonexty", fillcolor=_rgba(color, alpha),
                                     name=f"{lo}–{hi}", showlegend=col == 1, legendgroup=lo),
                          row=1, col=col)
        fig.add_trace(go.Scatter(x=x, y=[v["p50"] for v in stat], mode="lines+markers",
                                 line=dict(color=color), name="median", showlegend=col == 1,
                                 legendgroup="median"), row=1, col=col)
        fig.update_xaxes(title_text="epoch (0 = init)", tick0=0, dtick=_epoch_dtick(len(x)), row=1, col=col)
    fig.update_yaxes(title_text=f"{layer} activation {'after' if where == 'post' else 'before'} its norm",
                     row=1, col=1)
    fig = _layout(fig, "", height=400, uirevision=f"bands-{layer}-{where}")
    fig.update_layout(margin=dict(t=70))  # room for two-line panel titles
    return fig


def inside_norms(series: Sequence[dict], key: str, title: str, log_y: bool = True) -> go.Figure:
    """Per-layer ``key`` ("grad_norm" or "weight_norm") over epochs: one panel per run, one line per
    C block (darker = deeper)."""
    fig, rows = _panel_grid(series, cols=2, chars=26, shared_yaxes=True)  # drawn half the page wide
    for k, s in enumerate(series):
        row, col = k // 2 + 1, k % 2 + 1
        layers = list(s["records"][0]["layers"]) if s["records"] else []
        for i, layer in enumerate(layers):
            shade = int(200 - 170 * i / max(1, len(layers) - 1))
            fig.add_trace(go.Scatter(
                x=[r["epoch"] for r in s["records"]], y=[r["layers"][layer][key] for r in s["records"]],
                mode="lines", name=layer, legendgroup=layer, showlegend=k == 0,
                line=dict(color=f"rgb({shade},{shade},{shade})")), row=row, col=col)
        fig.update_xaxes(title_text="epoch" if row == rows else None, tick0=0,
                         dtick=_epoch_dtick(len(s["records"])), row=row, col=col)
        fig.update_yaxes(type="log" if log_y else None, row=row, col=col)
    for row in range(1, rows + 1):
        fig.update_yaxes(title_text=key.replace("_", " "), row=row, col=1)
    fig = _layout(fig, title, height=120 + 260 * rows, uirevision=f"norms-{key}")
    fig.update_layout(margin=dict(t=90), legend=dict(y=-0.25 / rows))
    return fig


def bn_running_vs_batch(record: dict, layer: str) -> go.Figure:
    """BatchNorm's running mean and variance per channel against the probe batch's own statistics
    at one epoch: points on the diagonal mean eval mode normalizes as the batch would."""
    bn = record["layers"][layer]["bn"]
    fig = _subplots(rows=1, cols=2, subplot_titles=("mean per channel", "variance per channel"))
    for col, (run_key, batch_key) in enumerate((("running_mean", "batch_mean"), ("running_var", "batch_var")),
                                               start=1):
        xs, ys = bn[batch_key], bn[run_key]
        lo, hi = min(xs + ys), max(xs + ys)
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=dict(color="#bbb", dash="dot"),
                                 showlegend=False, hoverinfo="skip"), row=1, col=col)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", marker=dict(color=NORM_COLORS["batch"]),
                                 name=run_key, showlegend=False,
                                 hovertemplate="batch %{x:.3f}<br>running %{y:.3f}<extra></extra>"),
                      row=1, col=col)
        fig.update_xaxes(title_text="probe batch", row=1, col=col)
        fig.update_yaxes(title_text="running (eval mode)", row=1, col=col)
    fig = _layout(fig, f"{layer}: BatchNorm running statistics vs the probe batch, epoch {record['epoch']}",
                  height=360)
    fig.update_layout(margin=dict(t=80))  # the panel titles sit below the figure's title, not on it
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def batchdep_plot(series: Sequence[dict]) -> go.Figure:
    """Test accuracy (%) with train-mode batch statistics against the test batch size (log x), one
    line per run, with its eval-mode accuracy as a dotted level.

    series: dicts with ``label``, ``norm`` and ``result`` (``batchdep.BatchDependence``)."""
    fig = _figure()
    for s in series:
        r, color = s["result"], NORM_COLORS.get(s["norm"], "#444")
        ks = sorted(r.batch_stats)
        fig.add_trace(go.Scatter(x=ks, y=[100 * r.batch_stats[k] for k in ks], mode="lines+markers",
                                 name=f"{s['label']}: batch statistics", line=dict(color=color)))
        fig.add_trace(go.Scatter(x=[ks[0], ks[-1]], y=[100 * r.eval_acc] * 2, mode="lines",
                                 name=f"{s['label']}: eval mode", line=dict(color=color, dash="dot")))
    fig.update_xaxes(title_text="test batch size", type="log")
    fig.update_yaxes(title_text="test accuracy (%)", range=[0, 100])
    return _layout(fig, "accuracy when each test batch normalizes with its own statistics", height=380)


def claim_plot(row: dict) -> go.Figure | None:
    """One claim's evidence (``claims.evaluate`` row): every seed of each arm as a point, the arm's
    mean with its 95% interval as a bar; None when the row has no arms to draw. Names are shown as
    plain text."""
    arms, intervals = row.get("arms") or {}, row.get("arm_intervals") or {}
    if not arms:
        return None
    fig = _figure()
    names = list(arms)
    for name in names:
        ys = [v for v in arms[name] if v is not None]
        color = NORM_COLORS.get(SHORT_TO_NORM.get(name, name), "#444")
        label = plain(name)
        fig.add_trace(go.Scatter(x=[label] * len(ys), y=ys, mode="markers", name=name,
                                 marker=dict(color=color, size=8, opacity=0.6), hoverinfo="y"))
        iv = intervals.get(name) or {}
        if iv.get("mean") is not None:
            err = {} if iv.get("low") is None else dict(
                error_y=dict(type="data", symmetric=False, array=[iv["high"] - iv["mean"]],
                             arrayminus=[iv["mean"] - iv["low"]], thickness=2, width=10, color="#222"))
            fig.add_trace(go.Scatter(x=[label], y=[iv["mean"]], mode="markers", name=f"{name}: mean",
                                     marker=dict(symbol="line-ew-open", size=22, color="#222"), **err))
    fig.update_xaxes(type="category")
    fig.update_yaxes(title_text=plain(row.get("axis") or ""))
    fig.update_layout(showlegend=False)
    fig = _layout(fig, "", height=240)
    fig.update_layout(margin=dict(t=10, b=40))
    return fig


LANDSCAPE_PANELS = (("loss_range", "loss range along the gradient"),
                    ("predictiveness", "gradient change ‖∇L(w) − ∇L(w − ηg)‖"),
                    ("beta", "effective β-smoothness"),
                    ("ics", "internal covariate shift, 1 − cos(G, G′)"))


def landscape_plot(runs: dict[str, list[dict]], norms: dict[str, str] | None = None) -> go.Figure:
    """The landscape probes over training (``landscape.landscape_record``): loss range,
    predictiveness, effective β and ICS (1 − cos, mean over the C blocks) against the step, one line
    per run (``runs``: label -> records), coloured by its norm (``norms``: label -> norm)."""
    fig = _subplots(rows=2, cols=2, subplot_titles=[wrap_title(t, 40) for _, t in LANDSCAPE_PANELS],
                        vertical_spacing=0.2, horizontal_spacing=0.1)
    for label, records in runs.items():
        norm = (norms or {}).get(label, "")
        color = NORM_COLORS.get(norm)  # None: plotly's own colour per run
        later = [r for r in records if r["step"] > 0]
        for i, (key, _) in enumerate(LANDSCAPE_PANELS):
            rs = later if key == "ics" else records
            ys = [landscape.ics(r) if key == "ics" else r[key] for r in rs]
            fig.add_trace(go.Scatter(x=[r["step"] for r in rs], y=ys, mode="lines+markers", name=label,
                                     legendgroup=label, showlegend=i == 0, line=dict(color=color)),
                          row=i // 2 + 1, col=i % 2 + 1)
    for i in range(4):
        fig.update_xaxes(title_text="step" if i >= 2 else None, row=i // 2 + 1, col=i % 2 + 1)
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_yaxes(type="log", row=2, col=1)
    fig = _layout(fig, "", height=620, uirevision="landscape")
    fig.update_layout(margin=dict(t=60), legend=dict(orientation="h", y=-0.12))
    return fig
