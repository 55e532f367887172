"""What the student gains from distilling teacher 1's hidden states beside its logits (issue #21, item 3b), on CoNLL-2003.

The protocol of `knowledge_bench.py` (its 200-sentence protocol, seed 0, the rest of the training set as unlabeled
transfer text): the variant forks the finished teacher and transfer stages of knowledge_bench's `input` run (its
baseline, today's student), so that only the student differs, and trains the student with
`student_hidden_weight` > 0. Teacher 1's hidden states are computed first (timed apart), then the student stage runs.
The result is cached as JSON in `--work-dir`; the summary, against the baseline's figures, goes to
`bench/results/hidden.json`.

    OMP_NUM_THREADS=1 nohup nice -n 5 python bench/hidden_bench.py --work-dir /tmp/hidden_bench \\
        --baseline-dir /tmp/knowledge_bench &
"""
import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from knowledge_bench import FIRST, SHARED_STAGES, corpus, run_config, unseen_entity_f1  # noqa: E402

from cascade_distill.benchmark import forked_cascade  # noqa: E402
from cascade_distill.pipeline import run_hidden_store  # noqa: E402
from cascade_distill.store import atomic_write_text, cached_json  # noqa: E402
from cascade_distill.student import Student  # noqa: E402

VARIANTS = {"hidden": {"student_hidden_weight": 1.0}}  # name: the run settings that differ from the baseline's
FIGURES = ("test_f1", "unseen_f1", "dev_f1")
PHASE_FIGURES = ("gold_dev_f1", "distill_dev_f1", "gold_test_f1", "distill_test_f1", "epochs", "best_epoch", "dev_curve",
                 "student_sent_per_s")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", required=True, help="run directories and cached results")
    parser.add_argument("--baseline-dir", required=True,
                        help="knowledge_bench's --work-dir: its finished `input` run is forked, its result the baseline")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="of: " + ", ".join(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "hidden.json"))
    return parser.parse_args(argv)


def run_variant(work: Path, baseline: Path, name: str, seed: int, parts) -> dict:
    "Run (or resume) variant `name` on a fork of the baseline's shared stages; its student's figures."
    train, dev, test, unlabeled = parts
    started = time.time()
    try:  # only the student differs: the teachers and transfer stages are the baseline's
        cascade = forked_cascade(baseline / FIRST / "run", work / name / "run", run_config(seed, VARIANTS[name]),
                                 SHARED_STAGES, train, dev, test, unlabeled=unlabeled)
    except ValueError as err:
        sys.exit(f"hidden_bench: {err}")
    store_started = time.time()
    store = run_hidden_store(cascade)  # timed apart; the student stage reuses it
    store_s = round(time.time() - store_started, 1)
    report = cascade.run()
    student = Student.from_pretrained(cascade.run_dir / "student" / "model")
    predicted = student.predict_tags([s.tokens for s in test])
    s = report["student"]
    result = {"variant": name, "settings": VARIANTS[name], "seed": seed,
              "test_f1": s["test_f1"], "dev_f1": s["dev_f1"], "kept_phase": s.get("kept_phase"),
              **unseen_entity_f1(train, test, predicted),
              **{k: s.get(k) for k in PHASE_FIGURES},
              "hidden_rows": int(store.logits.shape[0]), "hidden_width": int(store.logits.shape[1]),
              "hidden_store_mb": round(store.logits.nbytes / 2**20, 1), "hidden_store_s": store_s,
              "teacher1_test_f1": report["teacher1"].get("test_f1"),
              "student_wall_s": s.get("wall_s"), "wall_s": round(time.time() - started, 1)}
    print(json.dumps(result), flush=True)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    work, baseline = Path(args.work_dir), Path(args.baseline_dir)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        sys.exit(f"hidden_bench: unknown variants {', '.join(sorted(unknown))}; known: {', '.join(VARIANTS)}")
    base_file = baseline / FIRST / "result.json"
    if not base_file.is_file():
        sys.exit(f"hidden_bench: no baseline result {base_file}; run knowledge_bench.py --variants {FIRST} first")
    base = json.loads(base_file.read_text())["result"]
    base_report = json.loads((baseline / FIRST / "run" / "report.json").read_text())["student"]
    base.update({k: base_report.get(k) for k in PHASE_FIGURES})  # its phases, as the variants report them
    parts = corpus(args.seed)
    for name in args.variants:
        inputs = ["hidden", name, VARIANTS[name], args.seed, dataclasses.asdict(run_config(args.seed, VARIANTS[name]))]
        cached_json(work / name / "result.json", inputs, lambda: run_variant(work, baseline, name, args.seed, parts))
    results = {name: json.loads((work / name / "result.json").read_text())["result"]
               for name in VARIANTS if (work / name / "result.json").is_file()}
    summary = {"protocol": "CoNLL-2003: 200 gold sentences (seed 0), 500 dev, full test, the rest of train as unlabeled "
                           "text; teachers <= 20 epochs (early stopping), transfer_epochs 4; one seed; teacher and "
                           "transfer stages forked from knowledge_bench's input run",
               "note": "paired: the same teachers, transfer set and gold phase as the baseline (its gold-phase dev F1 "
                       "is the baseline's), so only the distillation phase differs; one seed, so no spread is known. "
                       "Wall times and speeds were measured under different machine loads and do not compare; the "
                       "saved student has the same weights file (keys, shapes, bytes) as the baseline's",
               "baseline": base, "variants": results,
               "vs_baseline": {name: {k: round(r[k] - base[k], 4) for k in FIGURES} for name, r in results.items()}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(summary, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
