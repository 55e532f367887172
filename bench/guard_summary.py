"""The teacher-2 guard's effect on the cascade + transfer student (issue #21): paired, seed by seed, against the same
student before the guard, on the few-label protocols.

`cascade_bench.py --transfer` caches each seed's transfer result in `WORK_DIR/seedN/transfer/`. Before rerunning a
protocol with the guard on (the default), copy each seed's `transfer/result.json`, `transfer/unseen.json` and
`transfer/student_cascade_transfer/result.json` to `UNGUARDED_DIR/pNNN/seedN/` (the last as
`student_cascade_transfer.json`). This script reads both and the guard's verdict from each seed's transfer run, and
writes `bench/results/guard.json`. It trains nothing.

    python bench/guard_summary.py --protocol 200=/work/bench/p200 --protocol 500=/work/bench/p500 \\
        --unguarded-dir /work/bench/unguarded
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cascade_distill.store import atomic_write_text  # noqa: E402

STUDENTS = ("student_kd_transfer", "student_cascade_transfer")
GUARD_KEYS = ("teacher2_relabels", "guard_dev_unsure", "guard_t1_f1", "guard_t2_f1", "guard", "unqualified",
              "relabelled", "changed", "dropped")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", action="append", required=True, metavar="SIZE=WORK_DIR",
                        help="a protocol's gold size and its cascade_bench --work-dir (repeat for each)")
    parser.add_argument("--unguarded-dir", required=True, help="the copies of the results before the guard")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "guard.json"))
    return parser.parse_args(argv)


def read_result(path: Path) -> dict:
    "The `result` of a cached JSON (`store.cached_json`)."
    return json.loads(path.read_text())["result"]


def student_figures(result_path: Path, unseen_path: Path) -> dict:
    "Test and unseen-entity F1 of the two transfer students of one seed's transfer result."
    result, unseen = read_result(result_path), read_result(unseen_path)
    return {name: {"test_f1": result["test_f1"][name], "unseen_f1": unseen[name]["unseen_f1"],
                   "kept_phase": result["kept_phase"][name]} for name in STUDENTS}


def seed_summary(seed_folder: Path, unguarded: Path) -> dict:
    "One seed: the guard's verdict, the two students before and with the guard, and the cascade's paired change."
    manifest = json.loads((seed_folder / "transfer" / "run" / "manifest.json").read_text())
    metrics = manifest["transfer_relabel"]["metrics"]
    before = student_figures(unguarded / "result.json", unguarded / "unseen.json")
    after = student_figures(seed_folder / "transfer" / "result.json", seed_folder / "transfer" / "unseen.json")
    cascade = "student_cascade_transfer"
    same_as = read_result(seed_folder / "transfer" / cascade / "result.json").get("same_as")
    return {"seed": int(seed_folder.name.removeprefix("seed")), **{k: metrics.get(k) for k in GUARD_KEYS},
            "unguarded": before, "guarded": after, "cascade_trained_as": same_as or cascade,
            "cascade_change": {k: round(after[cascade][k] - before[cascade][k], 4) for k in ("test_f1", "unseen_f1")}}


def mean_std(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else None, "n": len(values)}


def protocol_summary(size: str, work_dir: Path, unguarded_dir: Path) -> dict:
    "Every seed of one protocol that has a copy of its result before the guard."
    seeds = [seed_summary(folder, unguarded_dir / f"p{size}" / folder.name)
             for folder in sorted(work_dir.glob("seed*")) if (unguarded_dir / f"p{size}" / folder.name).is_dir()]
    pooled = {f"{when}_{name}_{figure}": mean_std([s[when][name][figure] for s in seeds])
              for when in ("unguarded", "guarded") for name in STUDENTS for figure in ("test_f1", "unseen_f1")}
    return {"gold_sentences": int(size), "seeds": seeds, "summary": pooled,
            "cascade_change": {k: mean_std([s["cascade_change"][k] for s in seeds]) for k in ("test_f1", "unseen_f1")}}


def main(argv=None) -> int:
    args = parse_args(argv)
    protocols = {}
    for spec in args.protocol:
        size, _, work_dir = spec.partition("=")
        protocols[size] = protocol_summary(size, Path(work_dir), Path(args.unguarded_dir))
    result = {"what": "cascade + transfer student before and with the teacher-2 guard (teacher 2 relabels unsure "
                      "unlabeled text only if its F1 on the dev samples teacher 1 is unsure of is higher than teacher "
                      "1's); the same teachers, gold phase and transfer set; KD + transfer is unaffected",
              "protocols": protocols}
    atomic_write_text(Path(args.out), json.dumps(result, indent=1))
    print(json.dumps({size: p["cascade_change"] for size, p in protocols.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
