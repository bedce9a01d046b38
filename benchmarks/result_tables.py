"""The docs' tables of the benchmark results (``benchmarks/results/*.json``), one function each.

A block between ``<!-- table NAME -->`` and ``<!-- /table NAME -->`` is ``TABLES[NAME]()``;
``python benchmarks/tables.py`` rewrites them (``--check`` in CI).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from cifar_app.web.tables import fill_blocks, markdown_table

RESULTS = Path(__file__).resolve().parent / "results"
LABEL = {"batch": "BatchNorm", "group": "GroupNorm", "layer": "LayerNorm", "none": "none"}
SHORT = {"batch": "BN", "group": "GN", "layer": "LN"}


def _load(name: str):
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def sweep_parallelism() -> str:
    """One 2-thread run against two 1-thread runs at once, by batch size (images/s)."""
    rows = [[str(r["batch_size"]), f"{r['one_x_2_threads']:,.0f} img/s", f"{r['two_x_1_thread']:,.0f} img/s",
             f"{r['ratio']:.2f}x"] for r in _load("sweep_parallelism.json")]
    return markdown_table(["batch size", "one run, 2 threads", "two runs at once, 1 thread each", "ratio"],
                          rows)


def throughput() -> str:
    """The engine against a plain DataLoader loop, by normalization (images/s, median of 3)."""
    rows = [[LABEL.get(r["norm"], r["norm"]), f"{r['engine_images_per_s']:,.0f} img/s",
             f"{r['plain_images_per_s']:,.0f} img/s", f"{r['speedup']:.2f}x"]
            for r in _load("throughput.json")]
    return markdown_table(["normalization", "engine", "plain DataLoader", "speed-up"], rows)


def batched_points() -> str:
    """Two points one after another, stacked with vmap, or as two 1-thread processes (images/s)."""
    rows = []
    for r in _load("batched_points_cpu.json")["rows"]:
        base = r["separate_images_per_s"]
        rows.append([LABEL.get(r["norm"], r["norm"]), r["precision"], f"{base:,.0f}",
                     f"{r['stacked_images_per_s']:,.0f} ({r['stacked_images_per_s'] / base:.2f}x)",
                     f"{r['processes_images_per_s']:,.0f} ({r['processes_images_per_s'] / base:.2f}x)"])
    return markdown_table(["norm", "arithmetic", "one after another, 2 threads", "stacked (vmap), 2 threads",
                           "two 1-thread processes"], rows)


def upload_latency() -> str:
    """From an upload's bytes to each reference model's answer (ms, median)."""
    rows = []
    for r in _load("upload_latency.json")["rows"]:
        per_model = r["after_decode_ms_per_model"]
        size = f"{r['bytes'] / 1e6:.1f} MB" if r["bytes"] >= 1e5 else f"{r['bytes']:,} bytes"
        rows.append([f"{r['image']}, {size}", f"{r['pixel_decode_ms']:.1f} ms",
                     f"{max(per_model.values()):.1f} ms",
                     f"{r['pixel_decode_ms'] + r['after_decode_ms'] + sum(r['model_ms'].values()):.1f} ms"])
    return markdown_table(["upload", "decoding the file", "everything after decoding, per model",
                           f"total, {len(per_model)} models"], rows)


def bf16_throughput(name: str) -> str:
    """The seed-style DataLoader loop against the engine in fp32 and in bf16 (images/s, median of 3)."""
    rows = []
    for r in _load(name)["rows"]:
        plain, fp32, bf16 = r["plain_images_per_s"], r["engine_images_per_s"], r["bf16_images_per_s"]
        rows.append([LABEL.get(r["norm"], r["norm"]), f"{plain:,.0f} img/s",
                     f"{fp32:,.0f} img/s ({fp32 / plain:.2f}x)",
                     f"{bf16:,.0f} img/s (**{bf16 / plain:.2f}x**)", f"{bf16 / fp32:.2f}x"])
    header = ["norm", "seed-style DataLoader loop", "engine fp32", "engine bf16", "bf16 over fp32"]
    return markdown_table(header, rows)


def live_page_cpu() -> str:
    """Chromium's CPU seconds over 36 s on the Train page, the fragment version against the live view."""
    cases = {"finished": "finished run (no polling)", "quiet": "running, nothing logged",
             "live": "running, logging"}
    rows = []
    for label, name in (("fragments", "live_page_cpu_fragments.json"), ("live view", "live_page_cpu.json")):
        by = {r["case"]: r["browser_cpu_s"] for r in _load(name)["results"]}
        rows.append([label, *(f"{by[c]:.2f} s" for c in cases)])
    return markdown_table(["Train page", *cases.values()], rows)


def watch_overhead() -> str:
    """Training speed watched / alone, the server's and Chromium's CPU and the live line's lag, for
    each version of the Train page (one file each, the same harness)."""
    versions = (("first version (a 2 s page re-run)", "watch_overhead_before.json"),
                ("fragments re-run every 2–20 s", "watch_overhead_fragments.json"),
                ("now: live view patched in place", "watch_overhead.json"))
    rows = []
    for label, name in versions:
        for tabs, s in _load(name)["summary"].items():
            rows.append([f"{label}, {tabs}", f"{s['ratio']:.3f}",
                         f"{s['server_cpu_s_per_min']:.1f} s per min",
                         f"{s['browser_cpu_s_per_min']:.1f} s per min",
                         f"{s['lag_median_s']:.2f} / {s['lag_p90_s']:.2f} / {s['lag_max_s']:.2f} s"])
    return markdown_table(["", "training speed watched / alone", "server CPU", "Chromium CPU",
                           "lag median / p90 / max"], rows)


def bf16_seeds() -> str:
    """The bf16-seeds preset against the fp32 seeds of the same recipe: what ``precision=auto`` goes by
    (``store.results.bf16_verdict`` of the shipped files)."""
    import statistics

    from cifar_app.store.results import BF16_ACCURACY, FP32_SEEDS, bf16_verdict

    verdict = bf16_verdict(BF16_ACCURACY, FP32_SEEDS)
    rows = []
    for norm, r in (verdict or {"norms": {}})["norms"].items():
        def ms(xs: list[float]) -> str:
            return f"{100 * statistics.fmean(xs):.2f} ± {100 * statistics.stdev(xs):.2f}%"
        per_seed = " / ".join(f"{100 * a:.2f}" for a in r["bf16"]) + "%"
        rows.append([LABEL.get(norm, norm), per_seed, ms(r["bf16"]), ms(r["fp32"]),
                     f"{100 * r['difference']:+.2f}", f"{100 * r['two_se']:.2f}",
                     "within noise" if r["within_noise"] else "below fp32 beyond 2 SE"])
    return markdown_table(["norm", "bf16, per seed", "bf16 mean ± std", "fp32 mean ± std", "difference",
                           "2 SE", "verdict"], rows)


def accuracy_runs(*names: str, short: bool = False) -> str:
    """``benchmarks/accuracy.py``'s runs (one file or several): final test and train accuracy and speed."""
    from cifar_app.core.norms import LABELS

    rows = []
    for name in names:
        for r in _load(name):
            norm = r["norm"]
            label = SHORT.get(norm, norm) if short else LABELS.get(norm, norm)
            rows.append([label, f"{r['params']:,}",
                         f"{100 * r['final_test_acc']:.2f}%", f"{100 * r['final_train_acc']:.2f}%",
                         f"{r['seconds_per_epoch']:.1f}", f"{r['images_per_s']:,.0f}"])
    return markdown_table(["normalization", "parameters", "final test accuracy", "final train accuracy",
                           "s per epoch", "training images/s"], rows)


def _engine_layout(norm: str, arithmetic: str) -> str:
    """The layout the engine trains ``norm`` in on a CPU (``precision.memory_format``)."""
    import torch

    from cifar_app.core.model import build_model
    from cifar_app.core.precision import memory_format

    fmt = memory_format(build_model(norm, arch="plain"), torch.device("cpu"), arithmetic)
    return "channels_last" if fmt == torch.channels_last else "contiguous"


def norm_profile() -> str:
    """ms per training step (one thread) by arithmetic and layout, split into convolutions and norm
    layers; the engine's choice in bold, with its speed-up over fp32."""
    rows = {(r["norm"], r["arithmetic"], r["format"]): r for r in _load("norm_profile.json")["rows"]}
    out = []
    for norm in dict.fromkeys(n for n, _, _ in rows):
        fp32 = rows[(norm, "fp32", "channels_last")]
        chosen = _engine_layout(norm, "bf16")
        cells = [f"{fp32['ms_per_step']:.1f} (conv {fp32['conv_ms']:.1f}, norm {fp32['norm_ms']:.1f})"]
        for fmt in ("channels_last", "contiguous"):
            r = rows[(norm, "bf16", fmt)]
            step = f"**{r['ms_per_step']:.1f}**" if fmt == chosen else f"{r['ms_per_step']:.1f}"
            gain = f": {fp32['ms_per_step'] / r['ms_per_step']:.2f}x" if fmt == chosen else ""
            cells.append(f"{step} ({r['conv_ms']:.1f}, {r['norm_ms']:.1f}){gain}")
        out.append([LABEL.get(norm, norm), *cells])
    return markdown_table(["norm", "fp32, channels_last", "bf16, channels_last", "bf16, contiguous"], out)


def norm_profile_2threads() -> str:
    """The bf16 step at two threads, split further, against the step a 3x engine may take."""
    d = _load("norm_profile_2threads.json")
    out = []
    for r in d["rows"]:
        if r["arithmetic"] != "bf16" or (r["norm"] != "group" and r["format"] != "channels_last"):
            continue
        chosen = r["format"] == _engine_layout(r["norm"], "bf16")
        step = f"**{r['ms_per_step']:.1f}**" if chosen else f"{r['ms_per_step']:.1f}"
        layout = r["format"] + (" (the engine's choice)" if chosen and r["norm"] == "group" else "")
        out.append([LABEL.get(r["norm"], r["norm"]), layout, step, f"{r['conv_ms']:.1f}",
                    f"{r['conv_bwd_ms']:.1f}", f"{r['norm_ms']:.1f}", f"{r['rest_ms']:.1f}",
                    f"≤ {d['budget_ms'][r['norm']]:.1f}"])
    return markdown_table(["norm, bf16", "layout", "step", "conv forward", "conv backward", "norm layers",
                           "rest", "3x needs"], out)


def recipe_at_full_scale(name: str = "recipe_separable-b.json") -> str:
    """A candidate recipe's seeds against its baseline's (``benchmarks/recipe_study.py``'s file and the
    shipped baseline it names): final single-view test accuracy, the difference and 2 SE, the verdict
    the study recorded, train accuracy and the minutes per run."""
    import statistics

    from cifar_app.store.results import REFERENCE_EXPERIMENTS

    rec = _load(name)
    base_path = RESULTS / rec["baseline"]
    if not base_path.exists():  # a shipped baseline has its one copy in the package
        base_path = REFERENCE_EXPERIMENTS / rec["baseline"]
    base = json.loads(base_path.read_text())

    def by_norm(points: list[dict]) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for q in sorted(points, key=lambda q: q["settings"]["seed"]):
            if q["status"] == "completed":
                out.setdefault(q["settings"]["norm"], []).append(q)
        return out

    cand, ref = by_norm(rec["points"]), by_norm(base["points"])
    rows = []
    for norm, v in rec["by_norm"].items():
        accs = [q["final_test_acc"] for q in cand[norm]]
        base_accs = [q["final_test_acc"] for q in ref.get(norm, [])]
        base_train = [q["epochs"][-1]["train_acc"] for q in ref.get(norm, []) if q.get("epochs")]
        minutes = [q["seconds"] / 60 for q in cand[norm]]
        rows.append([
            LABEL.get(norm, norm), " / ".join(f"{100 * a:.2f}" for a in accs) + "%",
            f"**{100 * statistics.fmean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}%**",
            f"{100 * statistics.fmean(base_accs):.2f} ± {100 * statistics.stdev(base_accs):.2f}%",
            f"**{100 * v['difference']:+.2f}**", f"{100 * v['two_se']:.2f}", v["verdict"],
            f"{100 * v['train_mean']:.2f} / "
            + (f"{100 * statistics.fmean(base_train):.2f}%" if base_train else "—"),
            f"{min(minutes):.0f}–{max(minutes):.0f}"])
    cand_name, base_name = rec["candidate"], rec["against"]
    return markdown_table(["norm", f"{cand_name}, per seed", "mean ± std", f"{base_name} (3 seeds)",
                           "difference", "2 SE", "verdict", f"train acc: {cand_name} / {base_name}",
                           "min per run (1 thread, shared)"], rows)


def reference_runs() -> str:
    """The shipped reference runs (``benchmarks/reference_runs.py``): single-view and flip-TTA test
    accuracy, the mean of the seeds preset's seeds of the same norm that trained (and how many
    diverged), and the train accuracy."""
    import statistics

    from cifar_app.core.norms import LABELS
    from cifar_app.store.results import REFERENCE_EXPERIMENTS, ExperimentResults
    from cifar_app.store.states import RunState

    seeds: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    for p in ExperimentResults.load(REFERENCE_EXPERIMENTS / "preset_seeds.json").points:
        if p.state == RunState.COMPLETED and p.final_test_acc is not None:
            seeds.setdefault(p.settings["norm"], []).append(p.final_test_acc)
        failed[p.settings["norm"]] = failed.get(p.settings["norm"], 0) + (p.state == RunState.FAILED)
    rows = []
    for r in _load("reference_runs.json")["runs"]:
        accs = seeds.get(r["norm"], [])
        mean = (f"{100 * statistics.fmean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}%" if len(accs) > 1
                else f"{100 * accs[0]:.2f}%" if accs else "")
        if failed.get(r["norm"]):
            mean += f" ({len(accs)} trained, {failed[r['norm']]} of {len(accs) + failed[r['norm']]} diverged)"
        label = LABELS.get(r["norm"], r["norm"])
        label += f" ({r['groups']} groups)" if r["norm"] == "group" else ""
        train = f"{100 * r['train_acc']:.2f}%" if r["train_acc"] is not None else "—"
        rows.append([label, f"{r['params']:,}", f"**{100 * r['accuracy']:.2f}%**",
                     f"{100 * r['tta_accuracy']:.2f}%", mean, train, f"`{r['run']}`"])
    return markdown_table(["normalization", "parameters", "test accuracy", "with flip TTA", "mean of 3 seeds",
                           "train accuracy (augmented)", "reference run"], rows)


def _pages(r: dict) -> list[str]:
    return [f"{r['runs_first_s']:.2f} / {r['runs_again_s']:.2f} s",
            f"{r['compare_first_s']:.2f} / {r['compare_again_s']:.2f} s ({r['compare_cold_s']:.2f} s)",
            f"{r['experiments_first_s']:.2f} / {r['experiments_again_s']:.2f} s",
            f"{r['server_peak_rss_mb']:,.0f} MB"]


def many_runs() -> str:
    """``benchmarks/many_runs.py``: listing and the pages by the number of runs in the store (wall s,
    medians), each size's lab line followed by the bare-Streamlit floor measured alongside it."""
    result = _load("many_runs.json")
    rows = []
    for r, floor in zip(result["rows"], result["floors"]):
        rows.append([f"{r['runs']:,}", f"{r['index_build_s']:.1f} s", f"{r['runs_json_s']:.2f} s",
                     *_pages(r)])
        rows.append(["*floor, alongside*", "—", "—", *_pages(floor)])
    return markdown_table(["runs", "index built (once)", "`runs --json`", "Runs page, first / again",
                           "Compare, first / again (as the first page)", "Experiments, first / again",
                           "server peak RSS"], rows)


def many_runs_vs_floor() -> str:
    """``benchmarks/many_runs.py``: the lab's page times over the floor's, from paired tries: the
    geometric mean of the pairs' ratios (95% interval); their median and range."""
    result = _load("many_runs.json")

    def cell(v: dict) -> str:
        interval = f" ({v['low']:.2f}–{v['high']:.2f})" if "low" in v else ""
        spread = f"; median ×{v['median']:.2f}, {v['min']:.2f}–{v['max']:.2f}" if "median" in v else ""
        return f"×{v['ratio']:.2f}{interval}{spread}"

    keys = ["runs_first_s", "runs_again_s", "compare_first_s", "compare_again_s", "compare_cold_s"]
    rows = [[f"{r['runs']:,}", *(cell(r["vs_floor"][k]) for k in keys), str(r["vs_floor"][keys[0]]["pairs"])]
            for r in result["rows"]]
    return markdown_table(["runs", "Runs page, first", "Runs page, again", "Compare, first", "Compare, again",
                           "Compare as the first page", "pairs"], rows)


def server_memory() -> str:
    """``benchmarks/server_memory.py``: the server's memory with the dataset, page after page."""
    r = _load("server_memory.json")
    tries = r["tries"]
    rows = [[page["page"], *(f"{t[i]['rss_mb']:,.0f} MB" for t in tries),
             *(f"{t[i]['peak_mb']:,.0f} MB" for t in tries),
             " / ".join(f"{t[i]['seconds']:.1f}" for t in tries)]
            for i, page in enumerate(tries[0])]
    n = len(tries)
    return markdown_table(["after visiting", *(f"RSS, try {k + 1}" for k in range(n)),
                           *(f"peak so far, try {k + 1}" for k in range(n)), "drawn after (s)"], rows)


def classroom() -> str:
    """``benchmarks/classroom.py``: N public-read viewers of one training run."""
    r = _load("classroom.json")
    seen = r["finish_seen_after_s"]
    return markdown_table(
        ["viewers", "server CPU while it trains", "tabs that showed the finished run",
         "after (median / max)", "server CPU from the end until all showed it"],
        [[str(r["viewers"]), f"{r['server_cores']:.3f} cores", f"{r['tabs_saw_finish']} of {r['viewers']}",
          f"{seen[len(seen) // 2]:.1f} / {seen[-1]:.1f} s" if seen else "—",
          f"{r['server_cpu_s_after_the_end']:.1f} s"]])


def many_runs_round(folder: str) -> str:
    """A judged round of ``many_runs.py`` invocations at 10,000 runs (``folder``'s RULE.md): each
    target's pooled median, the invocations' medians, the floor's alongside and the verdict
    (``many_runs_verdict``); then the lab over the floor from every pair of the round
    (``many_runs.against_floor``)."""
    from many_runs import against_floor
    from many_runs_verdict import TARGETS, verdict

    paths = sorted((RESULTS / folder).glob("*.json"))
    v = verdict(paths)  # the one reading of the files: a damaged one is left out, with its reason
    names = {"runs_json_s": "`runs --json`", "runs_first_s": "Runs page, first",
             "runs_again_s": "Runs page, again", "compare_first_s": "Compare, first",
             "compare_cold_s": "Compare as a fresh browser's first page (not judged)"}
    rows = []
    for key, e in v["targets"].items():
        target = f" ≤ {TARGETS[key]:g} s" if key in TARGETS else ""
        floors = ", ".join(f"{m:.2f}" for m in e["floor_per_invocation"])
        if key not in TARGETS:
            judged = "—"
        elif not v["judged"]:
            judged = f"not judged ({len(v['invocations'])} of 4 ran)"
        else:
            judged = ("met" if e["met"] else "**not met**") + f" ({e['invocations_within']} of 4)"
        rows.append([names[key] + target, f"{e['pooled_median']:.2f} s",
                     ", ".join(f"{m:.2f}" for m in e["per_invocation"]) + " s",
                     f"{floors} s" if floors else "—", judged])
    table = markdown_table(["target (10,000 runs)", "pooled median", "the invocations", "floor, alongside",
                            "verdict"], rows)
    table += "".join(f"\n\n{name} was left out: {why}" for name, why in v["rejected"].items())
    ratio_rows = []
    for key in ("runs_first_s", "runs_again_s", "compare_first_s", "compare_cold_s"):
        e = v["targets"][key]
        r = against_floor(e["samples"], e["floor_samples"])
        ratio_rows.append([names[key].replace(" (not judged)", ""),
                           f"×{r['ratio']:.2f} ({r['low']:.2f}–{r['high']:.2f})" if "low" in r
                           else f"×{r['ratio']:.2f} (no interval)",
                           f"×{r['median']:.2f}, {r['min']:.2f}–{r['max']:.2f}", str(r["pairs"])])
    return table + "\n\n" + markdown_table(
        ["the lab over the floor", "geometric mean (95% interval)", "median, range", "pairs"], ratio_rows)


TABLES: dict[str, Callable[[], str]] = {
    "sweep-parallelism": sweep_parallelism, "throughput": throughput, "batched-points": batched_points,
    "upload-latency": upload_latency, "bf16-throughput": lambda: bf16_throughput("throughput_bf16.json"),
    "bf16-throughput-b": lambda: bf16_throughput("throughput_bf16_b.json"), "live-page-cpu": live_page_cpu,
    "watch-overhead": watch_overhead, "bf16-seeds": bf16_seeds,
    "reference-runs": reference_runs, "separable-b": recipe_at_full_scale, "norm-profile": norm_profile,
    "norm-profile-2threads": norm_profile_2threads, "many-runs": many_runs,
    "many-runs-vs-floor": many_runs_vs_floor, "classroom": classroom, "server-memory": server_memory,
    "many-runs-round-s45": lambda: many_runs_round("many_runs_10k_s45"),
    "many-runs-round-s47": lambda: many_runs_round("many_runs_10k_s47"),
    "accuracy-h200": lambda: accuracy_runs("accuracy_h200.json", short=True),
    "accuracy-wider-family": lambda: accuracy_runs("accuracy_wider_family_a.json",
                                                   "accuracy_wider_family_b.json"),
}


def fill(text: str) -> str:
    """``text`` with every ``<!-- table NAME -->`` block recomputed."""
    def one(name: str) -> str:
        if name not in TABLES:
            raise SystemExit(f"error: no table {name!r} (known: {', '.join(TABLES)})")
        return TABLES[name]()
    return fill_blocks(text, "table", one, named=True)
