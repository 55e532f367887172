"""Out-of-fold scores (`folds`) on a few-label protocol (issue #21): does the cascade's second teacher get samples to
learn from, and does the cascade then beat KD? Paired, seed by seed, against the same seed with in-sample scores.

With few gold labels teacher 1 fits its training sentences, so in-sample scores leave teacher 2 next to nothing to
learn (0–13 unqualified sentences per seed). The `folds_3` lever scores each training sentence with a teacher 1 trained
on the other two thirds (and gives KD those out-of-fold soft labels). Each seed is run with

    python bench/seed_run.py --seed N --result RESULTS/seedN.json ARGS --train-size 200 --seed-levers folds_3 \\
        --spacy-steps 0 --work-dir WORK_DIR

(ARGS: the protocol's options from bench/README.md, without --transfer); this script reads those JSONs and writes
`bench/results/folds.json`. It trains nothing.

    python bench/folds_summary.py --results /work/bench/folds200 --gold-sentences 200
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cascade_distill.store import atomic_write_text  # noqa: E402

LEVER = "lever_folds_3"
STUDENTS = ("student_kd", "student_cascade")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, required=True, help="the folder of seed_run.py's seedN.json")
    parser.add_argument("--gold-sentences", type=int, required=True, help="the protocol's gold training sentences")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "folds.json")
    return parser.parse_args(argv)


def seed_summary(result: dict) -> dict:
    "One seed: the split and the students with in-sample scores (the protocol's) and with out-of-fold ones."
    seed, lever = result["seed"], result[LEVER]
    in_sample = {name: seed["test_f1"][name] for name in STUDENTS}
    out_of_fold = {name: lever[f"{name}_test_f1"] for name in STUDENTS}
    return {"seed": seed["seed"], "teacher1_test_f1": seed["test_f1"]["teacher1"],
            "unqualified": {"in_sample": seed["unqualified"], "out_of_fold": lever["unqualified"]},
            "teacher2_test_f1": {"in_sample": seed["test_f1"]["teacher2"], "out_of_fold": lever["teacher2_test_f1"]},
            "teacher2_f1_on_unqualified": {"teacher1": lever["teacher1_f1_on_unqualified"],
                                           "teacher2": lever["teacher2_f1_on_unqualified"]},
            "in_sample": in_sample, "out_of_fold": out_of_fold,
            "changes": {"cascade_minus_kd_out_of_fold": out_of_fold["student_cascade"] - out_of_fold["student_kd"],
                        "cascade_out_of_fold_minus_best_in_sample": out_of_fold["student_cascade"] - max(in_sample.values()),
                        "kd_out_of_fold_minus_in_sample": out_of_fold["student_kd"] - in_sample["student_kd"]}}


def mean_std(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else None, "n": len(values),
            "per_seed": [round(v, 4) for v in values]}


def main(argv=None) -> int:
    args = parse_args(argv)
    results = [json.loads(path.read_text()) for path in sorted(args.results.glob("seed*.json"))]
    results = [r for r in results if LEVER in r]
    if not results:
        sys.exit(f"folds_summary: no seed_run.py result with {LEVER} in {args.results}")
    seeds = [seed_summary(r) for r in results]
    summary = {key: mean_std([s["changes"][key] for s in seeds]) for key in seeds[0]["changes"]}
    summary.update({f"{when}_{name}": mean_std([s[when][name] for s in seeds])
                    for when in ("in_sample", "out_of_fold") for name in STUDENTS})
    out = {"gold_sentences": args.gold_sentences, "lever": LEVER.removeprefix("lever_"), "seeds": seeds,
           "summary": summary}
    atomic_write_text(args.out, json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
