"""Render a benchmark result (the JSON of `cascade_distill.benchmark.run_benchmark`): Markdown tables, plotly
charts and README.md's results section. Measuring lives in the package (nbs/10_benchmark.ipynb); presenting it here.

`bench/cascade_bench.py` writes the outputs with `write_outputs` and the README section with `update_readme`;
nbs/11_benchmark_results.ipynb shows the tables and charts; tests/test_benchmark.py checks README against the JSON.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from cascade_distill.benchmark import (MODEL_NAMES, MODELS, SPEED_MODELS, SYNTHETIC_MODEL_NAMES, TRANSFER_MODEL_NAMES,
                                       TRANSFER_MODELS)
from cascade_distill.pipeline import STAGES
from cascade_distill.store import atomic_write_text
from targets import TARGETS, TEACHER_TARGETS, TRANSFER_TARGETS  # bench/targets.py, next to this file


def _f(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"

def _table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])

def quality_table(result: dict) -> str:
    "Test F1 of the five models (and the spaCy baseline), mean ± std over seeds, with each seed's value."
    rows = []
    for m in (m for m in MODELS if m in result["quality"]):
        q = result["quality"][m]
        rows.append([MODEL_NAMES[m], f"{_f(q['mean'])} ± {_f(q['std'])}", " / ".join(_f(v) for v in q["values"])])
    return _table(["model", "test F1 (mean ± std)", "per seed"], rows)

def speed_table(result: dict) -> str:
    "Sentences per second of every timed model (end to end; forward pass alone at batch 32) and the student's ratio."
    rate = {(r["model"], r["batch_size"], r["mode"]): r["sentences_per_s"] for r in result["speed"]["speed"]}
    def cell(model, batch, mode="end_to_end"):
        return f"{rate[(model, batch, mode)]:,.0f}" if (model, batch, mode) in rate else "–"
    rows = [[SPEED_MODELS[m], cell(m, 1), cell(m, 32), cell(m, 32, "forward_only"),
             f"{rate[('student', 32, 'end_to_end')] / rate[(m, 32, 'end_to_end')]:.1f}×"]
            for m in SPEED_MODELS if (m, 32, "end_to_end") in rate]
    return _table(["model", "batch 1, sent/s", "batch 32, sent/s", "batch 32 forward only, sent/s",
                   "student ÷ model, batch 32"], rows)

def size_table(result: dict) -> str:
    "Parameters, weights on disk and peak memory of teacher 1, the student and spaCy (its folder, no parameter count)."
    rows = []
    for name in (n for n in SPEED_MODELS if n in result["speed"]["memory"]):
        s, m = result["speed"]["size"].get(name), result["speed"]["memory"][name]
        sizes = ([f"{s['parameters']:,}", f"{s['parameters_without_embeddings']:,}", f"{s['weights_mb']:.1f}"] if s
                 else ["–", "–", "–"])
        rows.append([SPEED_MODELS[name]] + sizes + [f"{m['peak_mib']:.0f}", f"{m['over_imports_mib']:.0f}"])
    return _table(["model", "parameters", "without embeddings", "weights (MB)", "peak memory (MiB)",
                   "over imports (MiB)"], rows)

def cost_table(result: dict) -> str:
    "Wall time of each stage per seed, and total cascade time by training-set size."
    stages = list(result["seeds"][0]["wall_s"])
    per_seed = _table(["seed"] + [s.replace("_", " ") for s in stages],
                      [[s["seed"]] + [_f(s["wall_s"].get(k), 1) for k in stages] for s in result["seeds"]])
    if not result["scaling"]:
        return per_seed
    scaling = _table(["training sentences", "teacher 1 (s)", "score (s)", "teacher 2 (s)", "student (s)", "total (s)",
                      "student test F1"],
                     [[f"{p['train_sentences']:,}", _f(p["wall_s"].get("teacher1"), 1), _f(p["wall_s"].get("score"), 1),
                       _f(p["wall_s"].get("teacher2"), 1), _f(p["wall_s"].get("student"), 1), _f(p["total_s"], 1),
                       _f(p["student_test_f1"])] for p in result["scaling"]])
    return per_seed + "\n\n" + scaling

def sweep_table(result: dict) -> str:
    "Cascade-student test F1 and the unqualified share at each threshold (first seed)."
    return _table(["threshold", "unqualified", "share", "teacher 1 F1 on unqualified", "teacher 2 F1 on unqualified",
                   "cascade student test F1"],
                  [[p["threshold"], f"{p['unqualified']:,}", f"{p['unqualified_share']:.1%}",
                    _f(p["teacher1_f1_on_unqualified"]), _f(p["teacher2_f1_on_unqualified"]),
                    _f(p["student_test_f1"])] for p in result["sweep"]])

def levers_table(result: dict) -> str:
    "Split, teacher 2 and student F1 with each lever's run settings (first seed), beside the protocol's defaults."
    s0 = result["seeds"][0]
    t2 = s0["teacher2_on_unqualified"]
    rows = [["none (the defaults above)", "", f"{s0['unqualified']:,}", f"{_f(t2['teacher1_f1'])} → {_f(t2['teacher2_f1'])}",
             _f(s0["test_f1"].get("teacher2")), _f(s0["test_f1"]["student_kd"]), _f(s0["dev_f1"]["student_cascade"]),
             _f(s0["test_f1"]["student_cascade"])]]
    for lever in result.get("levers", []):
        settings = ", ".join(f"{k}={v}" for k, v in lever["settings"].items())
        rows.append([lever["lever"], settings, f"{lever['unqualified']:,}",
                     f"{_f(lever['teacher1_f1_on_unqualified'])} → {_f(lever['teacher2_f1_on_unqualified'])}",
                     _f(lever.get("teacher2_test_f1")), _f(lever.get("student_kd_test_f1")),
                     _f(lever.get("student_cascade_dev_f1")), _f(lever["student_cascade_test_f1"])])
    return _table(["lever (first seed)", "settings", "unqualified", "F1 on unqualified, teacher 1 → teacher 2",
                   "teacher 2 test F1", "KD student test F1", "cascade student dev F1", "cascade student test F1"], rows)

def seed_levers_table(result: dict) -> str:
    "Levers tried on every seed: the students' test F1 (mean ± std) and the gaps the cascade issue asks about."
    def ms(q):
        return f"{_f(q['mean'])} ± {_f(q['std'])}"
    def gap(g):
        return f"{g['value']:+.4f} ({'>' if g['met'] else '≤'} {g['pooled_std']:.4f})"
    rows = []
    for name, lever in result.get("seed_levers_quality", {}).items():
        q = lever["quality"]
        settings = ", ".join(f"{k}={v}" for k, v in result["seed_levers"][name][0]["settings"].items())
        rows.append([name, settings, ms(q["teacher1_f1_on_unqualified"]) + " → " + ms(q["teacher2_f1_on_unqualified"]),
                     ms(q["student_gold"]), ms(q["student_kd"]), ms(q["student_cascade"]),
                     gap(lever["kd_above_gold_by_pooled_std"]), gap(lever["cascade_above_kd_by_pooled_std"])])
    return _table(["lever (every seed)", "settings", "F1 on unqualified, teacher 1 → teacher 2", "gold-only student",
                   "KD student", "cascade student", "KD − gold (pooled std)", "cascade − KD (pooled std)"], rows)

def grid_table(result: dict) -> str:
    "Dev and test F1 of the first seed's KD student at each α and T of the grid; the chosen pair marked."
    chosen = result.get("distillation_choice") or {}
    rows = [[p["alpha"], p["temperature"], _f(p["distill_dev_f1"]), _f(p["gold_dev_f1"]), _f(p["test_f1"]),
             "chosen" if (p["alpha"], p["temperature"]) == (chosen.get("alpha"), chosen.get("temperature")) else ""]
            for p in result["distillation_grid"]]
    return _table(["α (gold weight)", "T", "distilled phase dev F1", "gold phase dev F1", "kept student test F1", ""], rows)

def teacher2_table(result: dict) -> str:
    "Teacher 1's and teacher 2's F1 on the unqualified samples of each seed, and teacher 2's outcomes."
    rows = [[s["seed"], f"{s['unqualified']:,}", _f(s["teacher1_f1"]), _f(s["teacher2_f1"]),
             "out of fold" if s.get("out_of_fold") else "in sample",
             " / ".join(str(s.get(f"outcome_{o}", 0)) for o in ("fixed", "unchanged", "worse"))]
            for s in result["teacher2_fix"]["seeds"]]
    return _table(["seed", "unqualified", "teacher 1 F1", "teacher 2 F1", "teacher 2's labels",
                   "fixed / unchanged / worse"], rows)

def targets_table(result: dict) -> str:
    "The targets of the student and cascade issues (`bench/targets.py`): measured value and whether it was met."
    rows = [[wording, "–" if result["targets"][key]["value"] is None else form.format(result["targets"][key]["value"]),
             "yes" if result["targets"][key]["met"] else "no"]
            for key, (wording, form) in TARGETS.items() if key in result["targets"]]
    return _table(["target", "measured", "met"], rows)

def setup_line(result: dict) -> str:
    c, b, e = result["corpus"], result["bench"], result["environment"]
    return (f"{c.get('name', 'corpus')}: {c['train_sentences']:,} of {c['train_available']:,} training sentences, "
            f"{c['dev_sentences']:,} dev (early stopping), {c['test_sentences']:,} test; seeds "
            f"{', '.join(str(s) for s in b['seeds'])}; threshold {b['threshold']}; teachers ≤ {b['teacher_epochs']} epochs, "
            f"student ≤ {b['student_epochs']} epochs per phase; T = {b['temperature']}, α = {b['alpha']}; "
            f"spaCy {b.get('spacy_steps', 0):,} steps; "
            f"{e['cpu']}, {e['torch_threads']} torch threads, torch {e['torch']}, transformers {e['transformers']}.")

def markdown_report(result: dict) -> str:
    "Every table of a benchmark result as Markdown (the sweep and levers only when they were run)."
    s0 = result["seeds"][0]
    split = "; ".join(f"seed {s['seed']}: {s['target']:,} target / {s['unqualified']:,} unqualified" for s in result["seeds"])
    parts = ["# cascade_distill benchmark", setup_line(result),
             f"## Quality (test entity F1)\n\nSplit at {s0['threshold']}: {split}.\n\n" + quality_table(result),
             f"## Speed (CPU, {result['speed']['sentences']:,} test sentences)\n\n" + speed_table(result),
             "## Size and memory\n\n" + size_table(result), onnx_line(result),
             "## Cost (wall seconds)\n\n" + cost_table(result)]
    if result["sweep"]:
        parts.append("## Threshold sweep\n\n" + sweep_table(result))
    if result.get("teacher2_fix"):
        parts.append("## Teacher 2 on the unqualified samples\n\n" + teacher2_table(result))
    if result.get("levers"):
        parts.append("## Levers\n\n" + levers_table(result))
    if result.get("seed_levers_quality"):
        parts.append("## Levers on every seed\n\n" + seed_levers_table(result))
    if result.get("distillation_grid"):
        parts.append("## α and T (KD student, first seed; chosen on dev)\n\n" + grid_table(result))
    if result.get("quality_transfer"):
        parts.append("## Transfer set\n\n" + transfer_section(result))
    if result.get("quality_synthetic"):
        parts.append("## Synthetic transfer set\n\n" + synthetic_section(result))
    if result.get("quality_unseen"):
        parts.append("## Unseen entities and teacher 1's training\n\n" + teachers_section(result))
    parts.append("## Targets\n\n" + targets_table(result))
    return "\n\n".join(part for part in parts if part) + "\n"

def transfer_section(result: dict) -> str:
    "Protocol (b): the students with and without the transfer set, the transfer split and cost per seed, the targets."
    seeds = result["transfer"]
    intro = (f"{seeds[0]['unlabeled']:,} training sentences outside the subset, tags removed, as unlabeled text; "
             f"teacher 1's confidence threshold {seeds[0]['threshold']}.")
    cost = _table(["seed", "confident (teacher 1)", "to teacher 2", "changed by teacher 2", "transfer (s)",
                   "transfer relabel (s)", "KD + transfer student (s)", "cascade + transfer student (s)",
                   "logit stores (MB)", "peak RSS (MB)"],
                  [[s["seed"], f"{s['target']:,}", f"{s['unqualified']:,}", f"{s['changed']:,}",
                    _f(s["wall_s"]["transfer"], 1), _f(s["wall_s"]["transfer_relabel"], 1),
                    _f(s["wall_s"]["student_kd_transfer"], 1), _f(s["wall_s"]["student_cascade_transfer"], 1),
                    _f(s["memory"]["transfer_logits_mb"] + s["memory"]["transfer_teacher2_logits_mb"], 1),
                    _f(s["memory"]["peak_rss_mb"], 0)] for s in seeds])
    targets = result.get("targets_transfer", {})
    target_rows = [[wording, "–" if targets[key]["value"] is None else form.format(targets[key]["value"]),
                    "yes" if targets[key]["met"] else "no"]
                   for key, (wording, form) in TRANSFER_TARGETS.items() if key in targets]
    return "\n\n".join([intro, transfer_quality_table(result), cost, _table(["target", "measured", "met"], target_rows)])

def transfer_quality_table(result: dict) -> str:
    "Test F1 of the five students with and without the transfer set (and teacher 1, spaCy), mean ± std over seeds."
    quality = result["quality_transfer"]
    names = {**MODEL_NAMES, **TRANSFER_MODEL_NAMES}
    rows = [[names[m], f"{_f(quality[m]['mean'])} ± {_f(quality[m]['std'])}",
             " / ".join(_f(v) for v in quality[m]["values"])] for m in TRANSFER_MODELS if m in quality]
    return _table(["model", "test F1 (mean ± std)", "per seed"], rows)

def synthetic_section(result: dict) -> str:
    "The students distilled with a synthetic transfer set made from the gold sentences, beside the protocol's."
    quality = {**result["quality"], **result["quality_synthetic"]}
    names = {**MODEL_NAMES, **SYNTHETIC_MODEL_NAMES}
    shown = ["teacher1", "student_gold", "student_kd", "student_cascade", *SYNTHETIC_MODEL_NAMES]
    rows = [[names[m], f"{_f(quality[m]['mean'])} ± {_f(quality[m]['std'])}", " / ".join(_f(v) for v in quality[m]["values"])]
            for m in shown if m in quality]
    first = result["synthetic"][0]
    return (f"{first['unlabeled']:,} sentences made from the gold ones per seed (entities swapped, words masked, "
            f"n-gram windows; `augment.synthetic_transfer_set`), labelled by teacher 1 and routed like unlabeled text: "
            f"{first['target']:,} confident, {first['unqualified']:,} to teacher 2 (first seed).\n\n"
            + _table(["model", "test F1 (mean ± std)", "per seed"], rows))

def unseen_table(result: dict) -> str:
    "Each model's F1 on the test mentions never seen in the training gold and on the rest, mean ± std over seeds."
    unseen, names = result["quality_unseen"], {**MODEL_NAMES, **TRANSFER_MODEL_NAMES, **SYNTHETIC_MODEL_NAMES}
    order = [m for m in (*MODELS, *TRANSFER_MODELS, *SYNTHETIC_MODEL_NAMES) if m in unseen]
    rows = [[names[m], f"{_f(unseen[m]['unseen']['mean'])} ± {_f(unseen[m]['unseen']['std'])}",
             f"{_f(unseen[m]['seen']['mean'])} ± {_f(unseen[m]['seen']['std'])}"] for m in dict.fromkeys(order)]
    first = next(iter(unseen.values()))
    return (f"{first['unseen_gold']:,} of the test set's gold mentions have a surface form that no training gold "
            "mention has (first seed).\n\n" + _table(["model", "unseen-entity F1", "seen-entity F1"], rows))

def teacher_epochs_table(result: dict) -> str:
    "Teacher 1's epochs, best epoch and dev-F1 curve per seed: did early stopping end it, or the cap?"
    rows = [[s["seed"], s["teacher1_epochs"]["epochs"], s["teacher1_epochs"]["best_epoch"],
             " ".join(_f(f, 3) for f in s["teacher1_epochs"]["dev_curve"] or [])]
            for s in result["seeds"] if s.get("teacher1_epochs")]
    return _table(["seed", "teacher 1 epochs", "best epoch", "dev F1 by epoch"], rows)

def _judged(target: dict, form: str) -> list[str]:
    value = "–" if target["value"] is None else form.format(target["value"])
    return [value, "n/a" if target["met"] is None else "yes" if target["met"] else "no"]

def teachers_section(result: dict) -> str:
    "Issue #21: the unseen-entity F1 of every model, teacher 1's training curve, and the targets held against them."
    targets = result.get("targets_teachers", {})
    rows = [[wording, *_judged(targets[key], form)] for key, (wording, form) in TEACHER_TARGETS.items() if key in targets]
    parts = [unseen_table(result), "Teacher 1's training (early stopping on dev F1; the cap is "
             f"{result['bench']['teacher_epochs']} epochs):", teacher_epochs_table(result),
             _table(["target", "measured", "met"], rows)]
    return "\n\n".join(parts)

def onnx_line(result: dict) -> str:
    "Test F1 and file size of the ONNX exports of the first seed's cascade student (empty without them)."
    onnx = result["speed"].get("onnx") or {}
    if not onnx:
        return ""
    student = result["seeds"][0]["test_f1"]["student_cascade"]
    parts = [f"{SPEED_MODELS[name]}: test F1 {_f(v['test_f1'])}, {v['file_mb']:.1f} MB" for name, v in onnx.items()]
    return f"ONNX exports of the first seed's cascade student (test F1 {_f(student)} in torch): " + "; ".join(parts) + "."

README_START, README_END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"

def readme_section(result: dict, source: str = "bench/results") -> str:
    "The short results section of README.md, between its markers."
    transfer = ([f"With the transfer set ({result['transfer'][0]['unlabeled']:,} unlabeled sentences, protocol (b)):",
                 transfer_quality_table(result)] if result.get("quality_transfer") else [])
    fix = ["Teacher 2 on the unqualified samples:", teacher2_table(result)] if result.get("teacher2_fix") else []
    if result.get("seed_levers_quality"):
        fix += ["Levers tried on every seed:", seed_levers_table(result)]
    return "\n\n".join([README_START, setup_line(result), quality_table(result), *transfer, *fix, speed_table(result),
                        targets_table(result),
                        f"Full tables, threshold sweep, cost and charts: `{source}/` and the Benchmark results page.",
                        README_END])

def update_readme(readme, section: str, start_marker: str = README_START, end_marker: str = README_END) -> bool:
    "Replace the text between the markers (the benchmark's) of `readme` with `section`; True if the file changed."
    readme = Path(readme)
    text = readme.read_text()
    if start_marker not in text or end_marker not in text:
        raise ValueError(f"{readme}: no {start_marker} … {end_marker} markers to put the results between")
    start, end = text.index(start_marker), text.index(end_marker) + len(end_marker)
    new = text[:start] + section + text[end:]
    if new != text:
        atomic_write_text(readme, new)
    return new != text


def figures(result: dict) -> dict[str, go.Figure]:
    "Plotly charts of a benchmark result: quality, speed, cost and the threshold sweep."
    charts = {}
    q = result["quality"]
    models = [m for m in MODELS if m in q]
    charts["quality"] = go.Figure(go.Bar(x=[MODEL_NAMES[m] for m in models], y=[q[m]["mean"] for m in models],
                                         error_y={"type": "data", "array": [q[m]["std"] for m in models]}))
    charts["quality"].update_layout(title="Test entity F1, mean ± std over seeds", yaxis_title="F1")
    speed = pd.DataFrame(result["speed"]["speed"])
    charts["speed"] = go.Figure([go.Bar(name=f"{m} ({mode.replace('_', ' ')})", x=[f"batch {b}" for b in part.batch_size],
                                        y=part.sentences_per_s)
                                 for (m, mode), part in speed.groupby(["model", "mode"])])
    charts["speed"].update_layout(title="Sentences per second on CPU", yaxis_type="log", barmode="group")
    scaling = result["scaling"]
    charts["cost"] = go.Figure([go.Scatter(x=[p["train_sentences"] for p in scaling],
                                           y=[p["wall_s"].get(stage) for p in scaling], name=stage, mode="lines+markers")
                                for stage in STAGES])
    charts["cost"].add_scatter(x=[p["train_sentences"] for p in scaling], y=[p["total_s"] for p in scaling],
                               name="total", mode="lines+markers", line={"dash": "dash"})
    charts["cost"].update_layout(title="Wall time by training-set size", xaxis_title="training sentences",
                                 yaxis_title="seconds")
    sweep = make_subplots(specs=[[{"secondary_y": True}]])
    sweep.add_scatter(x=[p["threshold"] for p in result["sweep"]], y=[p["student_test_f1"] for p in result["sweep"]],
                      name="cascade student test F1", mode="lines+markers")
    sweep.add_scatter(x=[p["threshold"] for p in result["sweep"]], y=[p["unqualified_share"] for p in result["sweep"]],
                      name="unqualified share", mode="lines+markers", secondary_y=True)
    sweep.update_layout(title="Threshold sweep (first seed)", xaxis_title="threshold")
    charts["sweep"] = sweep
    if result.get("quality_transfer"):
        qt = result["quality_transfer"]
        names = {**MODEL_NAMES, **TRANSFER_MODEL_NAMES}
        shown = [m for m in TRANSFER_MODELS if m in qt]
        charts["transfer"] = go.Figure(go.Bar(x=[names[m] for m in shown], y=[qt[m]["mean"] for m in shown],
                                              error_y={"type": "data", "array": [qt[m]["std"] for m in shown]}))
        charts["transfer"].update_layout(title="Test entity F1 with the transfer set (protocol (b)), mean ± std",
                                         yaxis_title="F1")
    return charts

def write_outputs(result: dict, out_dir, name: str = "results") -> dict[str, Path]:
    "Write `name`.json, `name`.md and `name`.html (all charts, plotly.js from its CDN) into `out_dir`, atomically."
    out_dir = Path(out_dir)
    paths = {kind: out_dir / f"{name}.{kind}" for kind in ("json", "md", "html")}
    atomic_write_text(paths["json"], json.dumps(result, indent=1))
    atomic_write_text(paths["md"], markdown_report(result))
    charts = figures(result)
    html = "\n".join(fig.to_html(full_html=False, include_plotlyjs="cdn" if i == 0 else False)
                     for i, fig in enumerate(charts.values()))
    atomic_write_text(paths["html"], f"<html><body><h1>cascade_distill benchmark</h1>\n{html}\n</body></html>\n")
    return paths
