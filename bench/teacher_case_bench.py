"""Teacher 1 with and without word case as token types (issue #21 item 1), on CoNLL-2003, seed 0.

Trains teacher 1 (the embedded MiniLM-L6, English uncased) on the benchmark's subsets of the gold training sentences
(`benchmark.subsample(train, size, seed=0)`; dev: 500 sentences the same way, for early stopping) with the
benchmark's teacher settings, once with `case_types=True` and once without, and records test F1 on the full test set,
the dev curve, epochs, best epoch and wall time of each run. Each run's result is stored as JSON in `--work-dir` with
the settings it was trained with and reused by a rerun with the same settings, so a killed bench resumes (an
unfinished run resumes from its last complete epoch checkpoint). Writes `results/teacher_case.json` after every run.

    OMP_NUM_THREADS=1 python bench/teacher_case_bench.py --data ../shared/data/conll2003 --work-dir /tmp/case-bench
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "teacher_case.json"
DEFAULT_RUNS = ("500:on", "500:off", "2000:on", "2000:off")  # the order they are trained in


def teacher_config():
    "The benchmark's teacher-1 training: the run's teacher defaults with the benchmark's batch, rate and windows."
    from cascade_distill.config import TEACHER_TRAINING
    return dataclasses.replace(TEACHER_TRAINING, batch_size=32, learning_rate=1e-4, max_length=128, stride=32, seed=0,
                               progress=False)


def parse_run(text: str) -> tuple[int, bool]:
    "`SIZE:on` or `SIZE:off` as `(size, case_types)`."
    size, _, case = text.partition(":")
    if not size.isdigit() or case not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"a run is SIZE:on or SIZE:off, got {text!r}")
    return int(size), case == "on"


def run_name(size: int, case_types: bool) -> str:
    return f"t1_{size}_{'case' if case_types else 'plain'}"


def one_run(parts: dict, labels: list, work: Path, size: int, case_types: bool, dev_size: int) -> dict:
    "Train (or reuse) teacher 1 on `size` sentences with or without case types; its result dict."
    from cascade_distill.benchmark import subsample
    from cascade_distill.encode import default_checkpoint
    from cascade_distill.store import atomic_write_text
    from cascade_distill.teacher1 import train_teacher1
    from cascade_distill.training import evaluate_f1, history_metrics
    config = teacher_config()
    settings = {"train_size": size, "dev_size": dev_size, "case_types": case_types, "sample_seed": 0,
                "checkpoint": Path(default_checkpoint()).name, "teacher1": config.to_dict()}
    result_file = work / f"{run_name(size, case_types)}.json"
    if result_file.is_file():
        stored = json.loads(result_file.read_text())
        if stored.get("settings") == json.loads(json.dumps(settings)):
            print(f"{result_file.name}: reused", flush=True)
            return stored
    train, dev = subsample(parts["train"], size, seed=0), subsample(parts["dev"], dev_size, seed=0)
    checkpoints = work / f"{run_name(size, case_types)}_checkpoints"
    print(f"{run_name(size, case_types)}: training on {len(train)} sentences", flush=True)
    start = time.perf_counter()
    model, tokenizer, history = train_teacher1(train, dev, labels, default_checkpoint(), checkpoints, config,
                                               case_types=case_types)
    train_s = time.perf_counter() - start
    test_f1 = evaluate_f1(model, tokenizer, parts["test"], labels, config)
    metrics = history_metrics(history)
    result = {"settings": settings, "test_f1": round(test_f1, 4), "dev_f1": round(metrics["dev_f1"], 4),
              "best_epoch": metrics["best_epoch"], "epochs": metrics["epochs"], "dev_curve": metrics["dev_curve"],
              "train_wall_s": round(train_s, 1), "wall_s": round(time.perf_counter() - start, 1)}
    atomic_write_text(result_file, json.dumps(result, indent=1))
    shutil.rmtree(checkpoints, ignore_errors=True)  # the result is stored; the epoch checkpoints are 100s of MB
    print(f"{result_file.name}: test F1 {result['test_f1']}, best epoch {result['best_epoch']} of {result['epochs']}",
          flush=True)
    return result


def summary(runs: list[dict]) -> dict:
    "Per training size: test F1 with and without case types and the gain, where both were measured."
    sizes = {}
    for run in runs:
        sizes.setdefault(run["settings"]["train_size"], {})["case" if run["settings"]["case_types"] else "plain"] = run
    table = {}
    for size, pair in sorted(sizes.items()):
        row = {f"{kind}_test_f1": pair[kind]["test_f1"] for kind in ("plain", "case") if kind in pair}
        if len(pair) == 2:
            row["gain"] = round(pair["case"]["test_f1"] - pair["plain"]["test_f1"], 4)
        table[str(size)] = row
    gains = {size: row["gain"] for size, row in table.items() if "gain" in row}
    return {"by_size": table, "sizes_measured_both_ways": [int(size) for size in gains],
            "case_types_better_at_every_size_measured": bool(gains) and all(g > 0 for g in gains.values())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="folder with train.txt, dev.txt, test.txt (CoNLL columns, IOB2)")
    p.add_argument("--work-dir", type=Path, required=True, help="where each run's result (and its checkpoints) is kept")
    p.add_argument("--runs", nargs="+", type=parse_run, default=[parse_run(r) for r in DEFAULT_RUNS],
                   help="SIZE:on|off in the order to train (default: %(default)s)".replace("%(default)s", " ".join(DEFAULT_RUNS)))
    p.add_argument("--dev-size", type=int, default=500)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    from cascade_distill.benchmark import environment
    from cascade_distill.console import quiet_libraries
    from cascade_distill.data import label_list, load_corpus
    from cascade_distill.store import atomic_write_text
    quiet_libraries()
    train = load_corpus(args.data / "train.txt")
    labels = label_list(train)
    parts = {"train": train, "dev": load_corpus(args.data / "dev.txt", labels=labels),
             "test": load_corpus(args.data / "test.txt", labels=labels)}
    args.work_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for size, case_types in args.runs:
        runs.append(one_run(parts, labels, args.work_dir, size, case_types, args.dev_size))
        result = {"environment": environment(), "corpus": {"name": "conll2003", "train_available": len(train),
                                                           "dev_available": len(parts["dev"]),
                                                           "test_sentences": len(parts["test"])},
                  "runs": runs, "summary": summary(runs)}
        atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary(runs), indent=1))


if __name__ == "__main__":
    main()
