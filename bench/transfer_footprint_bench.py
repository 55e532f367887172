"""Speed and size of the students a transfer set gives, side by side with the gold-data students of the same seed
(issue #21's target: the student's speed and size within 10 % of the students before, or the trade stated).

A student distilled with a transfer set has the unlabeled sentences' words in its word table too, so its file grows
with the text; its network is the same. This times the saved students of one finished benchmark seed in turns, in one
process, with the same threads (`benchmark.measure_speed`: end to end and forward only, batch 1 and 32), and records
their parameters and bytes (`benchmark.model_size`). It trains nothing.

    OMP_NUM_THREADS=1 python bench/transfer_footprint_bench.py --seed-dir /work/bench/p500/seed0 \\
        --test ../shared/data/conll2003/test.txt
"""
import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from cascade_distill.benchmark import environment, load_timed, measure_speed, model_size  # noqa: E402
from cascade_distill.data import load_corpus  # noqa: E402
from cascade_distill.store import atomic_write_text  # noqa: E402

STUDENTS = {"student_kd": "student_kd/model", "student_cascade": "student_cascade/model",
            "student_kd_transfer": "transfer/student_kd_transfer/model",
            "student_cascade_transfer": "transfer/student_cascade_transfer/model"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-dir", type=Path, required=True, help="a finished seed folder of cascade_bench --transfer")
    parser.add_argument("--test", type=Path, required=True, help="the test corpus the sentences are taken from")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "transfer_footprint.json")
    return parser.parse_args(argv)


def _word_rows(module) -> int | None:
    "Rows of the student's word table (None: a student without one)."
    words = getattr(module, "words", None)
    return int(words.num_embeddings) if words is not None else None


def main(argv=None) -> int:
    args = parse_args(argv)
    folders = {name: args.seed_dir / path for name, path in STUDENTS.items() if (args.seed_dir / path).is_dir()}
    timed = {name: load_timed("student", folder, max_length=128) for name, folder in folders.items()}
    token_lists = [s.tokens for s in load_corpus(args.test)[: args.sentences]]
    speed = measure_speed(timed, token_lists, batch_sizes=(1, 32), repeats=args.repeats)
    sizes = {name: model_size(timed[name].module, folder) | {"word_table_rows": _word_rows(timed[name].module)}
             for name, folder in folders.items()}
    base = speed.query("model == 'student_kd' and batch_size == 32 and mode == 'end_to_end'").sentences_per_s.item()
    ratios = {name: round(row.sentences_per_s / base, 3)
              for name, row in speed.query("batch_size == 32 and mode == 'end_to_end'").set_index("model").iterrows()}
    result = {"seed_dir": str(args.seed_dir), "sentences": len(token_lists), "threads": torch.get_num_threads(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_average": os.getloadavg(),
              "environment": environment(), "speed": speed.to_dict("records"), "size": sizes,
              "batch_32_end_to_end_over_student_kd": ratios,
              "folder_mb_over_student_kd": {name: round(s["folder_mb"] / sizes["student_kd"]["folder_mb"], 2)
                                            for name, s in sizes.items()}}
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(json.dumps({k: result[k] for k in ("batch_32_end_to_end_over_student_kd", "folder_mb_over_student_kd")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
