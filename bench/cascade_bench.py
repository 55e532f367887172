#!/usr/bin/env python
"""Benchmark the cascade on a corpus: quality over seeds, speed, memory, size, cost and a threshold sweep.

    python bench/cascade_bench.py --train ../shared/data/conll2003/train.txt --dev ../shared/data/conll2003/dev.txt \
        --test ../shared/data/conll2003/test.txt --work-dir /tmp/bench-conll --name conll2003 --readme

Writes bench/results/NAME.{json,md,html}; with --readme, also the results section of README.md. Every part is
resumable: run the same command again after a kill, or with other settings in the same --work-dir (each result is
stored with the fingerprint of its inputs, and only what the new settings change is computed again). --render-only
rebuilds the targets, Markdown, charts and README section from an existing JSON. Measuring lives in
cascade_distill.benchmark (nbs/10_benchmark.ipynb), the targets in bench/targets.py, rendering in bench/render.py.
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from cascade_distill.baselines import split_dev
from cascade_distill.benchmark import BenchConfig, run_benchmark
from cascade_distill.data import DataError, load_corpus
from render import readme_section, update_readme, write_outputs  # bench/render.py, next to this script
from targets import with_targets  # bench/targets.py: what the measurements are held against

REPO = Path(__file__).resolve().parents[1]
CASE_TYPE_WORDS = {"off": False, "on": True, "auto": "auto"}  # --teacher-case-types -> BenchConfig.teacher_case_types


def numbers(kind):
    "A comma-separated list of `kind` values."
    return lambda text: tuple(kind(x) for x in text.split(",") if x.strip())


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", help="training corpus (CoNLL or JSONL)")
    p.add_argument("--dev", help="dev corpus, for early stopping (none: --dev-size sentences held out of --train)")
    p.add_argument("--test", help="test corpus, for every F1 and the speed measurement")
    p.add_argument("--work-dir", help="folder for the runs (models, tables); keep it to resume")
    p.add_argument("--name", default="results", help="file name of the outputs in --out")
    p.add_argument("--out", default=str(REPO / "bench" / "results"), help="folder of the JSON, Markdown and HTML")
    p.add_argument("--readme", action="store_true", help="also write the results section of README.md")
    p.add_argument("--render-only", action="store_true", help="rebuild Markdown, charts and README from the JSON")
    defaults = BenchConfig()
    p.add_argument("--train-size", type=int, help="seeded random subset of the training set (default: all)")
    p.add_argument("--dev-size", type=int, help="seeded random subset of dev for early stopping (default: all)")
    p.add_argument("--seeds", type=numbers(int), default=defaults.seeds)
    p.add_argument("--threshold", type=float, default=defaults.threshold)
    p.add_argument("--sweep", type=numbers(float), default=defaults.sweep)
    p.add_argument("--scale-sizes", type=numbers(int), default=defaults.scale_sizes)
    p.add_argument("--checkpoint", help="teacher encoder: hub id or folder (default: embedded MiniLM-L6)")
    for name in ("teacher_epochs", "student_epochs", "patience", "student_patience", "batch_size", "max_length",
                 "speed_repeats", "spacy_steps"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("learning_rate", "student_learning_rate", "temperature", "alpha"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    p.add_argument("--speed-sentences", type=int, default=defaults.speed_sentences)
    p.add_argument("--teacher-lr-scheduler", default=defaults.teacher_lr_scheduler,
                   help="teachers' learning-rate schedule (constant_with_warmup: early stopping ends them; linear)")
    p.add_argument("--teacher-case-types", choices=tuple(CASE_TYPE_WORDS), default="off",
                   help="the teachers read word case as token types (default off: the recorded protocols were "
                        "measured so; see results/teacher_case.json for its effect)")
    p.add_argument("--no-teacher2-guard", dest="teacher2_guard", action="store_false",
                   help="let teacher 2 relabel every unsure unlabeled sample, whether or not it beats teacher 1 on the "
                        "unsure dev samples (the protocols before the guard)")
    p.add_argument("--spacy-lang", default=defaults.spacy_lang, help="spaCy language of the baseline (zh for Chinese)")
    p.add_argument("--no-bert-base-speed", dest="bert_base_speed", action="store_false",
                   help="do not time a tagger of BERT-base shape")
    p.add_argument("--scheme", default="IOB2", help="tag scheme of the corpus files (IOB2, IOB1, BIOES, BMES)")
    p.add_argument("--levers", type=lambda text: tuple(x for x in text.split(",") if x), default=(),
                   help="comma-separated levers to try on the first seed (see cascade_distill.benchmark.LEVERS)")
    p.add_argument("--seed-levers", type=lambda text: tuple(x for x in text.split(",") if x), default=(),
                   help="comma-separated levers to try on every seed (mean ± std beside the protocol's students)")
    p.add_argument("--alphas", type=numbers(float), default=defaults.alphas,
                   help="distillation grid on the first seed's KD student: gold weights α (with --temperatures)")
    p.add_argument("--temperatures", type=numbers(float), default=defaults.temperatures,
                   help="distillation grid: temperatures T (with --alphas)")
    p.add_argument("--transfer", action="store_true",
                   help="protocol (b): also use the training sentences outside --train-size, tags removed, as "
                        "unlabeled text (KD + transfer and cascade + transfer students per seed)")
    p.add_argument("--unlabeled-threshold", type=float, default=defaults.unlabeled_threshold,
                   help="teacher-1 confidence that keeps its labels of an unlabeled sample (protocol (b))")
    p.add_argument("--transfer-epochs", type=int, default=defaults.transfer_epochs,
                   help="most distillation epochs of the transfer students (default: --student-epochs)")
    p.add_argument("--synthetic-transfer", type=int, default=defaults.synthetic_transfer,
                   help="also a synthetic transfer set of this many sentences made from the gold ones (entities "
                        "swapped, words masked, n-gram windows; 0: none), per seed")
    return p.parse_args(argv)


def bench_config(args) -> BenchConfig:
    fields = BenchConfig.__dataclass_fields__
    values = {k: v for k, v in vars(args).items() if k in fields}
    if "teacher_case_types" in values:  # the word given as the setting it stands for
        values["teacher_case_types"] = CASE_TYPE_WORDS[values["teacher_case_types"]]
    return BenchConfig(**values)


def main(argv=None) -> int:
    args = parse_args(argv)
    json_path = Path(args.out) / f"{args.name}.json"
    if args.render_only:
        result = json.loads(json_path.read_text())
    else:
        missing = [f"--{k.replace('_', '-')}" for k in ("train", "test", "work_dir") if not getattr(args, k)]
        if not args.dev and not args.dev_size:
            missing.append("--dev (or --dev-size, to hold dev out of --train)")
        if missing:
            sys.exit(f"cascade_bench: {', '.join(missing)} required (or --render-only)")
        files = [k for k in ("train", "dev", "test") if getattr(args, k)]
        try:
            parts = {k: load_corpus(getattr(args, k), scheme=args.scheme) for k in files}
        except DataError as err:
            sys.exit(f"cascade_bench: {err}")
        if "dev" not in parts:  # a corpus without a dev split (MSRA): hold it out of the training set
            parts["train"], parts["dev"] = split_dev(parts["train"], args.dev_size, seed=0)
        corpus = {"name": args.name, **{k: str(Path(getattr(args, k)).resolve()) for k in files}}
        result = run_benchmark(parts["train"], parts["dev"], parts["test"], args.work_dir, bench_config(args), corpus)
    result = with_targets(result)
    paths = write_outputs(result, args.out, args.name)
    print("\n".join(f"wrote {p}" for p in paths.values()))
    if args.readme:
        try:
            source = str(Path(args.out).resolve().relative_to(REPO))
        except ValueError:
            source = args.out
        changed = update_readme(REPO / "README.md", readme_section(result, source))
        print("README.md results section " + ("updated" if changed else "unchanged"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
