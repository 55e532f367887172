#!/usr/bin/env python
"""Peak memory of the scoring stage as the corpus grows (issue: large corpora stream in bounded memory).

    python bench/memory_bench.py --corpus ../shared/data/conll2003/train.txt --sizes 10000,100000

Each size runs in a fresh process: a synthetic training set of SIZE sentences (the corpus repeated, ids made unique),
a tiny teacher 1 (a 2-layer BERT trained for one epoch on 2,000 of the sentences, the same for every size, given to
the run as its finished first stage), then the scoring stage alone. A sampling thread reads the process's resident
memory every 5 ms; the figure that matters is the stage's peak above the memory held just before it (corpus, model
and libraries loaded). Writes bench/results/memory.json and prints a Markdown table.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    "Resident memory of this process now, in MiB (Linux)."
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakSampler(threading.Thread):
    "Samples this process's resident memory until stopped; `peak` is the highest seen."
    def __init__(self, interval: float = 0.005):
        super().__init__(daemon=True)
        self.interval, self.peak, self.running = interval, rss_mib(), True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_mib())
            time.sleep(self.interval)

    def stop(self) -> float:
        self.running = False
        self.join()
        return max(self.peak, rss_mib())


def synthetic(samples, size):
    "`size` sentences: `samples` repeated, each repeat with its own ids."
    from cascade_distill.data import Sample
    return [Sample(f"{samples[i % len(samples)].id}-r{i // len(samples)}", samples[i % len(samples)].tokens,
                   samples[i % len(samples)].tags) for i in range(size)]


def prepare_teacher(corpus: Path, work: Path) -> Path:
    "A tiny teacher 1 trained once, for every size."
    from cascade_distill.data import load_corpus
    from cascade_distill.encode import make_tiny_checkpoint
    from cascade_distill.pipeline import Cascade, CascadeConfig
    from cascade_distill.training import TrainConfig
    samples = load_corpus(corpus)
    checkpoint = make_tiny_checkpoint([s.tokens for s in samples[:5000]], work / "tiny", max_position=128)
    quick = TrainConfig(max_epochs=1, learning_rate=5e-3, max_length=128, progress=False, eval_batch_size=64)
    cascade = Cascade(work / "teacher-run", CascadeConfig(checkpoint=checkpoint, teacher1=quick), samples[:2000],
                      samples[2000:2200])
    cascade.run_teacher1()
    return work / "teacher-run"


def measure(corpus: Path, size: int, teacher_run: Path, work: Path) -> dict:
    "In this (fresh) process: scoring-stage memory on `size` synthetic sentences."
    from cascade_distill.data import load_corpus
    from cascade_distill.pipeline import Cascade
    samples = load_corpus(corpus)
    config = Cascade(teacher_run).config
    run = work / f"run-{size}"
    shutil.rmtree(run, ignore_errors=True)
    cascade = Cascade(run, config, synthetic(samples, size), samples[2000:2200])
    shutil.copytree(teacher_run / "teacher1" / "model", run / "teacher1" / "model")
    cascade.run_dir.record("teacher1", cascade.fingerprints()["teacher1"], ["teacher1/model"], {"given": True})
    model, _ = cascade.load_teacher1()  # loaded once before measuring, so the baseline holds the model
    del model
    before = rss_mib()
    sampler = PeakSampler()
    sampler.start()
    started = time.perf_counter()
    cascade.run_score()
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    written = sum(p.stat().st_size for p in run.rglob("*") if p.is_file() and ("scores" in str(p)))
    return {"sentences": size, "words": sum(len(s.tokens) for s in cascade.train),
            "rss_before_mib": round(before, 1), "peak_mib": round(peak, 1),
            "scoring_peak_over_before_mib": round(peak - before, 1), "scoring_s": round(seconds, 1),
            "scores_on_disk_mb": round(written / 1e6, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--work-dir", default=None)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "memory.json"))
    p.add_argument("--label", default="streaming (chunks of CHUNK samples, memory-mapped logits)")
    p.add_argument("--child", nargs=2, metavar=("SIZE", "TEACHER_RUN"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="memory-bench-"))
    if args.child:
        print(json.dumps(measure(Path(args.corpus), int(args.child[0]), Path(args.child[1]), work)))
        return 0
    teacher_run = work / "teacher-run"
    if not (teacher_run / "manifest.json").exists():
        prepare_teacher(Path(args.corpus), work)
    rows = []
    for size in [int(x) for x in args.sizes.split(",")]:
        done = subprocess.run([sys.executable, __file__, "--corpus", args.corpus, "--work-dir", str(work),
                               "--child", str(size), str(teacher_run)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(done.stderr[-3000:])
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    import cascade_distill
    import torch
    result = {"implementation": args.label, "cascade_distill": cascade_distill.__file__, "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(), "corpus": str(Path(args.corpus).resolve()), "sizes": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print("\n| sentences | words | RSS before scoring (MiB) | peak during scoring (MiB) | scoring's own peak (MiB) | "
          "scoring (s) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sentences']:,} | {r['words']:,} | {r['rss_before_mib']} | {r['peak_mib']} | "
              f"{r['scoring_peak_over_before_mib']} | {r['scoring_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
