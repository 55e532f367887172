#!/usr/bin/env python
"""One seed of a `cascade_bench.py` protocol, so that seeds can run side by side in separate processes.

    python bench/seed_run.py --seed 1 --train $S/train.txt --dev $S/dev.txt --test $S/test.txt \
        --work-dir /tmp/bench-p2000 --train-size 2000 --dev-size 500 ... --transfer

Takes every option of `cascade_bench.py` and `--seed`: runs `run_seed` (and `transfer_seed` with --transfer, on the
rest of the training set as unlabeled text, and `lever_point` for each of --seed-levers) for that seed in
`WORK_DIR/seed{SEED}` (a lever in `seed_lever_folder`, as `run_benchmark` runs it), with the `BenchConfig` the same options build
there. Every stage is cached with its inputs' fingerprint, so the `cascade_bench.py` command with the
same options and work directory afterwards finds the seeds done and only collects them (and measures speed).
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from cascade_bench import bench_config, parse_args  # bench/cascade_bench.py, next to this script
from cascade_distill.benchmark import (lever_point, protocol_subsets, run_seed, seed_lever_folder, transfer_seed,
                                       unlabeled_rest)
from cascade_distill.data import DataError, load_corpus
from cascade_distill.store import atomic_write_text


def main(argv=None) -> int:
    seed_parser = argparse.ArgumentParser(add_help=False)
    seed_parser.add_argument("--seed", type=int, required=True, help="the seed to run")
    seed_parser.add_argument("--result", help="also write the seed's results (run_seed, transfer, levers) to this JSON")
    seed_args, rest = seed_parser.parse_known_args(argv)
    args = parse_args(rest)
    if not (args.train and args.dev and args.test and args.work_dir):
        sys.exit("seed_run: --train, --dev, --test and --work-dir required")
    bench = bench_config(args)
    try:
        full_train, dev, test = (load_corpus(getattr(args, k), scheme=args.scheme) for k in ("train", "dev", "test"))
    except DataError as err:
        sys.exit(f"seed_run: {err}")
    train, dev = protocol_subsets(full_train, dev, bench)
    seed_folder = Path(args.work_dir) / f"seed{seed_args.seed}"
    result = {"seed": run_seed(train, dev, test, seed_folder, bench, seed_args.seed)}
    if bench.transfer:
        result["transfer"] = transfer_seed(seed_folder, unlabeled_rest(full_train, train), bench, seed_args.seed)
    for name in bench.seed_levers:  # in the folders of `run_benchmark`, so that it finds them done
        result[f"lever_{name}"] = lever_point(seed_folder, seed_lever_folder(args.work_dir, bench, name, seed_args.seed),
                                              bench, name, seed_args.seed)
    if seed_args.result:
        atomic_write_text(Path(seed_args.result), json.dumps(result, indent=1, default=str))
    print(json.dumps({"seed": seed_args.seed, "test_f1": result["seed"]["test_f1"],
                      **({"transfer_test_f1": result["transfer"].get("test_f1")} if "transfer" in result else {}),
                      **{key: value for key, value in result.items() if key.startswith("lever_")}}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
