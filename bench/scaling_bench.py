#!/usr/bin/env python
"""Peak memory and time of each transfer-set stage as the unlabeled text grows (issue #21, item 4: much text).

    python bench/scaling_bench.py --corpus ../shared/data/conll2003/train.txt --sizes 10000,100000

Each size runs in a fresh process on a run prepared beforehand: 2,000 gold sentences and 200 dev sentences of the
corpus, SIZE unlabeled sentences (the corpus repeated, tags removed, ids made unique) stored in the run, and a tiny
teacher 1 (a 2-layer BERT trained for one epoch, the same for every size) given to the run as its finished first
stage. Each stage then runs in a fresh process that opens the run (reading the unlabeled text from disk, as a
resumed run does) and runs that stage alone, the stages before it being finished: `transfer` (teacher 1 labels the text), `score`, `split`, `teacher2`, `transfer_relabel` (routing,
teacher 2 on the unsure samples) and `student` (1 epoch on gold, 1 on the transfer set). A sampling thread reads the
process's memory every 5 ms. Per stage it records the peak above the memory of the process before the run was opened
(libraries loaded, no text; opening the run counts in the stage), twice: all resident pages, and anonymous pages only (resident minus file-backed: the
memory-mapped logit and feature files are page cache the kernel can drop, the anonymous pages it cannot).

Writes the `scaling` key of bench/results/memory.json (the scoring stage's earlier figures stay under `sizes`) and
prints a Markdown table. The target: at 10x the text, every stage's peak at most 2x.
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
sys.path.insert(0, str(REPO))
STAGES = ("transfer", "score", "split", "teacher2", "transfer_relabel", "student")


def memory_mib() -> tuple[float, float]:
    "Resident and anonymous (resident minus file-backed) memory of this process now, in MiB (Linux)."
    pages = Path("/proc/self/statm").read_text().split()
    resident, shared = int(pages[1]), int(pages[2])
    size = os.sysconf("SC_PAGE_SIZE") / 2**20
    return resident * size, (resident - shared) * size


class PeakSampler(threading.Thread):
    "Samples this process's memory until stopped; `peaks` are the highest resident and anonymous figures seen."
    def __init__(self, interval: float = 0.005):
        super().__init__(daemon=True)
        self.interval, self.peaks, self.running = interval, list(memory_mib()), True

    def run(self):
        while self.running:
            self.peaks = [max(p, m) for p, m in zip(self.peaks, memory_mib())]
            time.sleep(self.interval)

    def stop(self) -> tuple[float, float]:
        self.running = False
        self.join()
        return tuple(max(p, m) for p, m in zip(self.peaks, memory_mib()))


def unlabeled_text(samples, size):
    "`size` sentences without tags: `samples` repeated, each repeat with its own ids."
    from cascade_distill.data import Sample
    return [Sample(f"u{i}", samples[i % len(samples)].tokens, ["O"] * len(samples[i % len(samples)].tokens))
            for i in range(size)]


def quick_config(checkpoint):
    "The run's settings: one epoch everywhere, so that the figures are about the text, not about convergence."
    from cascade_distill.pipeline import CascadeConfig
    from cascade_distill.training import TrainConfig
    quick = TrainConfig(max_epochs=1, learning_rate=5e-3, max_length=128, progress=False, eval_batch_size=64)
    student = TrainConfig(max_epochs=1, learning_rate=1e-3, batch_size=32, progress=False, eval_batch_size=256)
    return CascadeConfig(checkpoint=str(checkpoint), teacher1=quick, teacher2=quick, student_training=student,
                         transfer_epochs=1, unlabeled_threshold=0.9)


def prepare(corpus: Path, work: Path, sizes) -> dict[int, Path]:
    "A tiny teacher 1 trained once; per size a run directory holding the data and that teacher as its first stage."
    from cascade_distill.data import load_corpus
    from cascade_distill.encode import make_tiny_checkpoint
    from cascade_distill.pipeline import Cascade
    samples = load_corpus(corpus)
    gold, dev = samples[:2000], samples[2000:2200]
    checkpoint = make_tiny_checkpoint([s.tokens for s in samples[:5000]], work / "tiny", max_position=128)
    teacher_run = work / "teacher-run"
    if not (teacher_run / "teacher1" / "model").is_dir():
        Cascade(teacher_run, quick_config(checkpoint), gold, dev).run_teacher1()
    runs = {}
    for size in sizes:
        run = work / f"run-{size}"
        shutil.rmtree(run, ignore_errors=True)
        cascade = Cascade(run, quick_config(checkpoint), gold, dev, unlabeled=unlabeled_text(samples, size))
        shutil.copytree(teacher_run / "teacher1" / "model", run / "teacher1" / "model")
        cascade.run_dir.record("teacher1", cascade.fingerprints()["teacher1"], ["teacher1/model"], {"given": True})
        runs[size] = run
    return runs


def measure(run: Path, stage: str) -> dict:
    "In this (fresh) process: open the run and run `stage`; memory above the process before opening, and time."
    import torch
    from cascade_distill.pipeline import Cascade
    torch.manual_seed(0)
    base_resident, base_anonymous = memory_mib()
    sampler = PeakSampler()
    sampler.start()
    started = time.perf_counter()
    cascade = Cascade(run)  # reads the unlabeled text from disk, as a resumed run does
    opened = time.perf_counter()
    cascade.run_stage(stage)
    finished = time.perf_counter()
    resident, anonymous = sampler.stop()
    return {"stage": stage, "unlabeled": len(cascade.unlabeled), "open_s": round(opened - started, 1),
            "s": round(finished - opened, 1), "peak_resident_mib": round(resident - base_resident, 1),
            "peak_anonymous_mib": round(anonymous - base_anonymous, 1),
            "base_resident_mib": round(base_resident, 1), "base_anonymous_mib": round(base_anonymous, 1)}


def measure_size(corpus: str, run: Path) -> dict:
    "Every stage of the run in `run`, each in a fresh process (the stages before it finished): `{stage: figures}`."
    row = {}
    for stage in STAGES:
        done = subprocess.run([sys.executable, __file__, "--corpus", corpus, "--child", str(run), stage],
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(done.stderr[-3000:])
        row[stage] = json.loads(done.stdout.strip().splitlines()[-1])
        row["unlabeled"] = row[stage].pop("unlabeled")
        print(stage, row[stage], flush=True)
    return row


def table(rows) -> str:
    "The Markdown table of `rows`: per stage, time and the two peaks, one column per size."
    sizes = [r["unlabeled"] for r in rows]
    head = "| stage | " + " | ".join(f"{n:,}: s / peak MiB (anon.)" for n in sizes) + " | peak ratio (anon.) |"
    lines = [head, "|---" * (len(sizes) + 2) + "|"]
    for stage in STAGES:
        cells = [f"{r[stage]['s']} / {r[stage]['peak_resident_mib']} ({r[stage]['peak_anonymous_mib']})" for r in rows]
        first, last = rows[0][stage]["peak_anonymous_mib"], rows[-1][stage]["peak_anonymous_mib"]
        ratio = f"{last / first:.2f}" if first > 1 else "—"
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--work-dir", default=None)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "memory.json"))
    p.add_argument("--label", default="transfer set streamed")
    p.add_argument("--child", nargs=2, metavar=("RUN", "STAGE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.child[1])))
        return 0
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="scaling-bench-"))
    sizes = [int(x) for x in args.sizes.split(",")]
    runs = prepare(Path(args.corpus), work, sizes)
    rows = [measure_size(args.corpus, runs[size]) for size in sizes]
    import torch
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    result["scaling"] = {"implementation": args.label, "torch": torch.__version__,
                         "torch_threads": torch.get_num_threads(), "corpus": str(Path(args.corpus).resolve()),
                         "gold": 2000, "sizes": rows}
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
