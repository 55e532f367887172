#!/usr/bin/env python
"""Side by side: the benchmark's protocols (200, 500, 2,000 gold sentences, ...) from their result JSONs.

    python bench/protocols.py --names conll2003_200,conll2003_500,conll2003_2000 --readme

Each name is a `bench/results/NAME.json` written by `cascade_bench.py`. Writes `bench/results/protocols.md` (test F1
and unseen-entity F1 of every model per protocol, and the targets of issue #21 per protocol) and, with --readme,
README.md's protocols section between its markers. Rendering only: nothing is measured here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render import _f, _judged, _table, update_readme  # noqa: E402  (bench/render.py)
from targets import TEACHER_TARGETS, TRANSFER_TARGETS, with_targets  # noqa: E402

from cascade_distill.benchmark import (MODEL_NAMES, MODELS, SYNTHETIC_MODEL_NAMES, TRANSFER_MODEL_NAMES,  # noqa: E402
                                       TRANSFER_MODELS)

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- protocols:start -->", "<!-- protocols:end -->"
PROTOCOLS = ("conll2003_200", "conll2003_500", "conll2003_2000")  # README's columns: 200, 500 and 2,000 gold sentences
ORDER = tuple(dict.fromkeys((*MODELS, *TRANSFER_MODELS, *SYNTHETIC_MODEL_NAMES)))
NAMES = {**MODEL_NAMES, **TRANSFER_MODEL_NAMES, **SYNTHETIC_MODEL_NAMES}


def protocol_label(result: dict) -> str:
    "The protocol's name in the tables: its gold sentences and seeds."
    corpus, seeds = result["corpus"], len(result["seeds"])
    return f"{corpus['train_sentences']:,} gold ({seeds} seed{'s' if seeds > 1 else ''})"


def _mean_std(q: dict | None) -> str:
    return "–" if not q else f"{_f(q['mean'])} ± {_f(q['std'])}"


def quality_rows(results: list[dict]) -> list[list[str]]:
    "Test F1 of every model (rows) in every protocol (columns), mean ± std over its seeds."
    full = [{**r["quality"], **(r.get("quality_transfer") or {}), **(r.get("quality_synthetic") or {})}
            for r in results]  # teacher 2 is only in `quality`, the synthetic students only in theirs
    return [[NAMES[m], *(_mean_std(q.get(m)) for q in full)] for m in ORDER if any(m in q for q in full)]


def unseen_rows(results: list[dict]) -> list[list[str]]:
    "Unseen-entity F1 of every model in every protocol that measured it."
    unseen = [r.get("quality_unseen", {}) for r in results]
    return [[NAMES[m], *(_mean_std(u[m]["unseen"]) if m in u else "–" for u in unseen)]
            for m in ORDER if any(m in u for u in unseen)]


def target_rows(results: list[dict]) -> list[list[str]]:
    "The targets of issue #21 per protocol: the measured value and whether it was met."
    judged = [with_targets(r) for r in results]
    rows = []
    for group, wordings in (("targets_teachers", TEACHER_TARGETS), ("targets_transfer", TRANSFER_TARGETS)):
        for key, (wording, form) in wordings.items():
            cells = [" ".join(_judged(j[group][key], form)) if key in j.get(group, {}) else "–" for j in judged]
            if any(c != "–" for c in cells):
                rows.append([wording, *cells])
    return rows


def _guard_note(result: dict) -> str:
    "Whether the protocol's transfer students were routed with the teacher-2 guard (results before it have no key)."
    return ("teacher 2 relabels unsure text only where it beats teacher 1 (the guard)"
            if result["bench"].get("teacher2_guard") else "teacher 2 relabels all unsure text (before the guard)")


def _case_note(result: dict) -> str:
    "Whether the protocol's teachers read word case (`teacher_case_types`; results before it have no key: off)."
    setting = result["bench"].get("teacher_case_types", False)
    return {False: "teachers blind to word case", True: "teachers read word case"}.get(
        setting, f"teachers read word case where the encoder has token types (`{setting}`)")


def protocols_section(results: list[dict], source: str = "bench/results") -> str:
    "README.md's protocols section: the three tables, between the markers."
    header = ["model", *(protocol_label(r) for r in results)]
    notes = [f"- {protocol_label(r)}: {r['corpus'].get('name', '?')}, teachers ≤ {r['bench']['teacher_epochs']} epochs "
             f"({r['bench'].get('teacher_lr_scheduler', 'linear')} learning rate), "
             f"{'the rest of the training set as unlabeled text' if r.get('transfer') else 'no unlabeled text'}"
             + (f", {_guard_note(r)}" if r.get("transfer") else "") + f", {_case_note(r)}"
             for r in results]
    return "\n\n".join([
        START, "Test entity F1 (CoNLL-2003 test set), mean ± std over seeds:", _table(header, quality_rows(results)),
        "F1 on the test mentions whose surface form never occurs in the protocol's training gold:",
        _table(header, unseen_rows(results)) if any(r.get("quality_unseen") for r in results) else "(not measured)",
        "Targets (measured value, met):", _table(["target", *header[1:]], target_rows(results)),
        "\n".join(notes), f"Per protocol: `{source}/NAME.md`.", END])


def protocol_figures(results: list[dict]) -> dict:
    "Plotly charts: each model's test F1 and unseen-entity F1 by protocol (mean, std as error bars)."
    import plotly.graph_objects as go
    charts = {}
    for key, title, pick in (("quality", "Test entity F1 by protocol",
                              lambda r: {**r["quality"], **(r.get("quality_transfer") or {}),
                                         **(r.get("quality_synthetic") or {})}),
                             ("unseen", "Unseen-entity F1 by protocol",
                              lambda r: {m: u["unseen"] for m, u in r.get("quality_unseen", {}).items()})):
        per_protocol = [pick(r) for r in results]
        models = [m for m in ORDER if any(m in q for q in per_protocol)]
        bars = [go.Bar(name=protocol_label(r), x=[NAMES[m] for m in models],
                       y=[q[m]["mean"] if m in q else None for m in models],
                       error_y={"type": "data", "array": [q[m]["std"] if m in q else 0 for m in models]})
                for r, q in zip(results, per_protocol)]
        charts[key] = go.Figure(bars).update_layout(title=title + ", mean ± std over seeds", barmode="group",
                                                    yaxis_title="F1")
    return charts


def load_results(folder, names) -> list[dict]:
    "The result JSONs `folder/NAME.json` of `names` that exist, in that order."
    paths = [Path(folder) / f"{name}.json" for name in names if name]
    return [json.loads(path.read_text()) for path in paths if path.is_file()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--names", default=",".join(PROTOCOLS), help="comma-separated result names in --out, in column "
                   "order (default: README's)")
    p.add_argument("--out", default=str(REPO / "bench" / "results"))
    p.add_argument("--readme", action="store_true", help="also write README.md's protocols section")
    args = p.parse_args(argv)
    results = load_results(args.out, args.names.split(","))
    section = protocols_section(results)
    (Path(args.out) / "protocols.md").write_text("# Protocols side by side\n\n" + section + "\n")
    if args.readme:
        update_readme(REPO / "README.md", section, START, END)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
