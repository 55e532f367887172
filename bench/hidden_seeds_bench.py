"""Hidden-state distillation on every seed of a benchmark protocol, paired with the protocol's own cascade + transfer
student (issue #21, item 3b: keep the lever only where it helps, on more than one seed).

For each seed of a finished `cascade_bench.py --transfer` work directory this forks the seed's transfer run (teachers,
transfer set and routing stay as they are), computes teacher 1's hidden states (`run_hidden_store`, timed apart) and
trains the cascade + transfer student again with `student_hidden_weight` > 0, from the same gold phase (that of the
seed's KD + transfer student, as the benchmark does), the same routed targets and the same settings otherwise. The
baseline is the seed's stored cascade + transfer result. Results are cached per seed in `--out-dir`; the summary goes to
`bench/results/hidden_seeds.json`.

    OMP_NUM_THREADS=1 python bench/hidden_seeds_bench.py ARGS --train-size 200 --work-dir /work/bench/p200 \\
        --out-dir /work/bench/p200-hidden --seeds 0,1,2
"""
import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from cascade_bench import bench_config, parse_args as bench_args  # noqa: E402

from cascade_distill.benchmark import TEACHER_STAGES, forked_cascade, train_student_variant  # noqa: E402
from cascade_distill.pipeline import run_hidden_store  # noqa: E402
from cascade_distill.scoring import unseen_entity_f1  # noqa: E402
from cascade_distill.store import atomic_write_text, cached_json  # noqa: E402
from cascade_distill.student import Student  # noqa: E402

WEIGHT = 1.0  # the weight hidden_bench.py measured on one seed
FORKED = (*TEACHER_STAGES, "transfer", "transfer_relabel")
STUDENT = "student_cascade_transfer"


def parse_args(argv=None):
    "This script's own options, then cascade_bench.py's arguments (the protocol) from the rest."
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--out-dir", type=Path, required=True, help="forked runs, students and cached results")
    parser.add_argument("--weight", type=float, default=WEIGHT, help="student_hidden_weight of the variant")
    parser.add_argument("--summary", type=Path, default=REPO / "bench" / "results" / "hidden_seeds.json")
    own, rest = parser.parse_known_args(argv)
    return bench_args(rest), own.out_dir, own.weight, own.summary


def seed_result(seed_folder: Path, out: Path, config, weight: float) -> dict:
    "Train (or resume) the hidden-state cascade + transfer student of one seed; its figures beside the baseline's."
    try:  # teachers, transfer set and routing stay as they are: only the student differs
        cascade = forked_cascade(seed_folder / "transfer" / "run", out / "run",
                                 dataclasses.replace(config, student_hidden_weight=weight), FORKED)
    except ValueError as err:
        sys.exit(f"hidden_seeds_bench: {err}")
    started = time.time()
    store = run_hidden_store(cascade)
    store_s = round(time.time() - started, 1)
    samples, soft = cascade.distillation_targets()
    kept, kept_soft = cascade.transfer_targets()
    result = train_student_variant(cascade, out / STUDENT, soft, samples,
                                   gold_phase=seed_folder / "transfer" / "student_kd_transfer",
                                   unlabeled=kept, unlabeled_soft=kept_soft)
    predicted = Student.from_pretrained(out / STUDENT / "model").predict_tags([s.tokens for s in cascade.test])
    unseen = unseen_entity_f1(cascade.train, cascade.test, predicted)
    base = json.loads((seed_folder / "transfer" / "result.json").read_text())["result"]
    base_unseen = json.loads((seed_folder / "transfer" / "unseen.json").read_text())["result"][STUDENT]
    return {"seed": config.seed, "weight": weight,
            "hidden": {"test_f1": result["test_f1"], "dev_f1": result["dev_f1"], "kept_phase": result["kept_phase"],
                       "unseen_f1": unseen["unseen_f1"], "wall_s": result["wall_s"]},
            "baseline": {"test_f1": base["test_f1"][STUDENT], "dev_f1": base["dev_f1"][STUDENT],
                         "kept_phase": base["kept_phase"][STUDENT], "unseen_f1": base_unseen["unseen_f1"]},
            "hidden_store": {"rows": int(store.logits.shape[0]), "width": int(store.logits.shape[1]),
                             "mb": round(store.logits.nbytes / 2**20, 1), "wall_s": store_s}}


def summary(results: list[dict]) -> dict:
    "Paired differences (hidden − baseline) per figure: per seed, mean and std."
    change = {k: [round(r["hidden"][k] - r["baseline"][k], 4) for r in results] for k in ("test_f1", "unseen_f1", "dev_f1")}
    return {k: {"per_seed": v, "mean": round(statistics.mean(v), 4),
                "std": round(statistics.stdev(v), 4) if len(v) > 1 else None} for k, v in change.items()}


def main(argv=None) -> int:
    args, out_dir, weight, summary_path = parse_args(argv)
    bench = bench_config(args)
    work = Path(args.work_dir)
    results = []
    for seed in bench.seeds:
        config = bench.transfer_config(seed)
        seed_folder, out = work / f"seed{seed}", out_dir / f"seed{seed}"
        inputs = ["hidden_seeds", dataclasses.asdict(config), weight,
                  json.loads((seed_folder / "transfer" / "result.json").read_text())["fingerprint"]]
        results.append(cached_json(out / "result.json", inputs,
                                   lambda: seed_result(seed_folder, out, config, weight)))
        print(json.dumps(results[-1]), flush=True)
    record = {"protocol": f"{args.name}: {bench.train_size} gold sentences, the rest of train as unlabeled text "
                          f"(cascade_bench --transfer), seeds {list(bench.seeds)}",
              "note": "paired: each seed's cascade + transfer student of the protocol (the baseline) trained again with "
                      "the hidden-state term, from the same gold phase, teachers, routed targets and settings",
              "weight": weight, "seeds": results, "hidden_minus_baseline": summary(results)}
    atomic_write_text(summary_path, json.dumps(record, indent=1))
    print(json.dumps(record["hidden_minus_baseline"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
