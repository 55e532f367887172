"""What the student gains from the teacher's knowledge of words (issue #21, item 3), on CoNLL-2003.

The benchmark's 200-sentence protocol: 200 seeded training sentences as gold, 500 dev sentences for early stopping,
the full test set, and the rest of the training set, tags removed, as unlabeled (transfer) text. One `Cascade` run per
variant of the student's word vectors; the variants after the first fork its finished teacher and transfer stages,
so that only the student differs. Each variant's result is cached as JSON in `--work-dir`; the summary is written to
`bench/results/knowledge.json`.

    OMP_NUM_THREADS=1 nohup python bench/knowledge_bench.py --work-dir /tmp/knowledge_bench --variants input &
    # once its stages up to transfer_relabel are finished (its student may still train):
    OMP_NUM_THREADS=1 nohup python bench/knowledge_bench.py --work-dir /tmp/knowledge_bench --variants static &
"""
import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cascade_distill.benchmark import BenchConfig, forked_cascade, subsample, unlabeled_rest  # noqa: E402
from cascade_distill.data import label_list, load_corpus  # noqa: E402
from cascade_distill.features import entity_spans  # noqa: E402
from cascade_distill.pipeline import Cascade  # noqa: E402
from cascade_distill.store import atomic_write_text, cached_json  # noqa: E402
from cascade_distill.student import Student  # noqa: E402

DATA = Path("/work/shared/data/conll2003")
VARIANTS = {  # name: the run settings that differ from today's student
    "input": {},  # today's table: mean input (layer-0) subword embedding per word
    "static": {"student_word_vectors": "static"},  # model2vec-style static vectors of the fine-tuned teacher 1
    "static_sif": {"student_word_vectors": "static_sif"},  # the same, Zipf/SIF-weighted
    # static rows also for the words of the unlabeled sentences routing dropped (no teacher labels, so no training)
    "static_all": {"student_word_vectors": "static", "student_vocab_all_unlabeled": True},
    "input_all": {"student_vocab_all_unlabeled": True},  # today's rows for the same, larger vocabulary
}
FIRST = "input"
SHARED_STAGES = ("teacher1", "transfer", "score", "split", "teacher2", "transfer_relabel")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", required=True, help="run directories and cached results")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="of: " + ", ".join(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "knowledge.json"))
    return parser.parse_args(argv)


def corpus(seed: int):
    "Gold, dev, test and unlabeled samples of the 200-sentence protocol."
    full_train = load_corpus(DATA / "train.txt")
    labels = label_list(full_train)
    train = subsample(full_train, 200, seed=0)
    dev = subsample(load_corpus(DATA / "dev.txt", labels=labels), 500)
    test = load_corpus(DATA / "test.txt", labels=labels)
    return train, dev, test, unlabeled_rest(full_train, train)


def run_config(seed: int, overrides: dict):
    "`BenchConfig(...).cascade_config(seed)` with teachers capped at 20 epochs, 4 transfer epochs, and `overrides`."
    config = BenchConfig(teacher_epochs=20).cascade_config(seed)
    teacher = dataclasses.replace(config.teacher1, lr_scheduler="constant_with_warmup", warmup=0.05)  # as TEACHER_TRAINING
    return dataclasses.replace(config, teacher1=teacher, teacher2=teacher, transfer_epochs=4, **overrides)


def surface(tokens, start, end) -> str:
    return " ".join(tokens[start:end]).lower()


def unseen_entity_f1(train, test, predicted) -> dict:
    "Micro F1 over test entities whose lower-cased text is no gold training entity's (gold and predicted alike)."
    seen = {surface(s.tokens, a, b) for s in train for _, a, b in entity_spans(s.tags)}
    tp = n_gold = n_pred = 0
    for sample, tags in zip(test, predicted):
        gold = {(t, a, b) for t, a, b in entity_spans(sample.tags) if surface(sample.tokens, a, b) not in seen}
        pred = {(t, a, b) for t, a, b in entity_spans(tags) if surface(sample.tokens, a, b) not in seen}
        tp, n_gold, n_pred = tp + len(gold & pred), n_gold + len(gold), n_pred + len(pred)
    precision, recall = tp / max(n_pred, 1), tp / max(n_gold, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"unseen_f1": round(f1, 4), "unseen_gold_entities": n_gold}


def vocabulary_cover(student: Student, test) -> float:
    "Share of the test words the student's word table has a row for."
    vocab = set(student.featurizer.vocab)
    words = [w.lower() for s in test for w in s.tokens]
    return round(sum(w in vocab for w in words) / len(words), 4)


def run_variant(work: Path, name: str, seed: int, parts) -> dict:
    "Run (or resume) variant `name`; its student's figures."
    train, dev, test, unlabeled = parts
    folder, config = work / name, run_config(seed, VARIANTS[name])
    started = time.time()
    if name == FIRST:
        cascade = Cascade(folder / "run", config, train, dev, test, unlabeled=unlabeled)
    else:  # only the student differs: fork the first variant's teachers and transfer stages
        try:
            cascade = forked_cascade(work / FIRST / "run", folder / "run", config, SHARED_STAGES, train, dev, test,
                                     unlabeled=unlabeled)
        except ValueError as err:
            sys.exit(f"knowledge_bench: run variant {FIRST} first: {err}")
    report = cascade.run()
    student = Student.from_pretrained(folder / "run" / "student" / "model")
    predicted = student.predict_tags([s.tokens for s in test])
    result = {"variant": name, "settings": VARIANTS[name], "seed": seed,
              "test_f1": report["student"]["test_f1"], "dev_f1": report["student"]["dev_f1"],
              "kept_phase": report["student"].get("kept_phase"),
              **unseen_entity_f1(train, test, predicted), "test_words_in_table": vocabulary_cover(student, test),
              "table_rows": len(student.featurizer.vocab) + 1,
              "teacher1_test_f1": report["teacher1"].get("test_f1"),
              "student_wall_s": report["student"].get("wall_s"), "wall_s": round(time.time() - started, 1)}
    print(json.dumps(result), flush=True)
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(args.work_dir)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        sys.exit(f"knowledge_bench: unknown variants {', '.join(sorted(unknown))}; known: {', '.join(VARIANTS)}")
    parts = corpus(args.seed)
    for name in args.variants:  # a variant other than the first forks the first's shared stages, once they are finished
        inputs = ["knowledge", name, VARIANTS[name], args.seed, dataclasses.asdict(run_config(args.seed, {}))]
        cached_json(work / name / "result.json", inputs, lambda: run_variant(work, name, args.seed, parts))
    results = {name: json.loads((work / name / "result.json").read_text())["result"]
               for name in VARIANTS if (work / name / "result.json").is_file()}  # every variant run so far
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"protocol": "CoNLL-2003: 200 gold sentences (seed 0), 500 dev, full test, the rest of train as unlabeled "
                           "text; teachers <= 20 epochs (early stopping), transfer_epochs 4; one seed",
               "variants": results}
    if FIRST in results:
        summary["vs_input"] = {name: {k: round(r[k] - results[FIRST][k], 4) for k in ("test_f1", "unseen_f1", "dev_f1")}
                               for name, r in results.items() if name != FIRST}
    atomic_write_text(out, json.dumps(summary, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
