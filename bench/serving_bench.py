"""Serving speed on CoNLL-2003 in a few minutes: torch vs ONNX Runtime fp32 vs int8, sentences/s and words/s.

Trains (or reuses) a student of the default architecture on the gold tags of a CoNLL subset, then times it end to end
(featurizing, network, Viterbi) at batch 1 and 32 with `cascade_distill.serving.compare_runtimes`, all runtimes in
turns in one process with the same threads, and records test F1 and file sizes. With `--footprint`, also builds a
fresh venv with only what serving needs (no torch), and records its size and the import time of the serving module.

    python bench/serving_bench.py --data ../shared/data/conll2003 --work-dir /tmp/serving-bench --footprint
"""
from __future__ import annotations

import argparse
import configparser
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "serving.json"


def train_or_load(data: Path, work: Path, train_size: int, dev_size: int, epochs: int):
    "The student of this bench: trained once on the first `train_size` training sentences, then reused from `work`."
    from cascade_distill.data import label_list, load_corpus
    from cascade_distill.student import train_student
    from cascade_distill.training import TrainConfig
    folder = work / "student"
    if (folder / "config.json").is_file():
        return folder
    train, dev = load_corpus(data / "train.txt")[:train_size], load_corpus(data / "dev.txt")[:dev_size]
    labels = label_list(train + dev)
    config = TrainConfig(max_epochs=epochs, patience=2, batch_size=32, learning_rate=3e-3, warmup=0.0, progress=False)
    student, _ = train_student(train, dev, labels, work / "train", config=config)
    return student.save_pretrained(folder)


def venv_footprint(work: Path) -> dict:
    "A fresh venv with cascade_distill (--no-deps), numpy and onnxruntime: its size, packages and the module's import."
    venv = work / "serve-venv"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    settings = configparser.ConfigParser(delimiters=["="])
    settings.read(REPO / "settings.ini", encoding="utf-8")
    pins = [p for p in settings["DEFAULT"]["serve_requirements"].split() if not p.startswith("onnx==")]  # onnx: export
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["--no-deps", str(REPO)], check=True)
    subprocess.run(pip + pins, check=True)
    frozen = subprocess.run([str(python), "-m", "pip", "freeze"], check=True, capture_output=True, text=True).stdout
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    size = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file() and not p.is_symlink())
    site_size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink())
    probe = ("import sys, time; t = time.perf_counter(); import cascade_distill.serving, onnxruntime; "
             "print(time.perf_counter() - t, len(sys.modules), 'torch' in sys.modules)")
    runs = [subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True).stdout.split()
            for _ in range(3)]
    return {"install": f"pip install --no-deps cascade_distill && pip install {' '.join(pins)}",
            "packages": sorted(line for line in frozen.splitlines() if line and not line.startswith("-e")),
            "venv_mib": round(size / 2**20, 1), "site_packages_mib": round(site_size / 2**20, 1),
            "import_s": round(min(float(r[0]) for r in runs), 3), "modules_loaded": int(runs[0][1]),
            "torch_imported": runs[0][2] == "True"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "conll2003")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/serving-bench"))
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--dev-size", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--sentences", type=int, default=1000, help="test sentences timed at batch 32 (and scored)")
    parser.add_argument("--sentences-batch-1", type=int, default=300, help="test sentences timed at batch 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="", help="intra-op threads of torch and ONNX Runtime, comma-separated to "
                        "time several (default: all cores)")
    parser.add_argument("--footprint", action="store_true", help="also measure a fresh serving-only venv")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from cascade_distill.data import load_corpus
    from cascade_distill.serving import compare_runtimes
    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    folder = train_or_load(args.data, args.work_dir, args.train_size, args.dev_size, args.epochs)
    trained_s = time.perf_counter() - started
    test = load_corpus(args.data / "test.txt")[: args.sentences]
    tokens, gold = [s.tokens for s in test], [s.tags for s in test]
    result = {"corpus": str(args.data.name), "train_sentences": args.train_size, "student_seconds": round(trained_s, 1),
              "machine": {"cpus": len(os.sched_getaffinity(0)), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version(),
                          "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
              "speed": {}}
    for threads in [int(t) for t in args.threads.split(",") if t] or [None]:
        for batch_size, n in ((1, args.sentences_batch_1), (32, args.sentences)):
            scored = gold[:n] if n == len(gold) else None  # F1 on the full set only
            run = compare_runtimes(folder, tokens[:n], batch_size, args.repeats, scored, threads)
            result["speed"][f"threads_{run['threads']}_batch_{batch_size}"] = run
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    full = next(run for key, run in result["speed"].items() if key.endswith("_batch_32"))
    result["f1"] = {name: row["f1"] for name, row in full["runtimes"].items()}
    result["int8_f1_drop_points"] = full["int8_f1_drop_points"]
    result["file_mib"] = {name: row["file_mb"] for name, row in full["runtimes"].items() if "file_mb" in row}
    result["file_mib"]["torch_folder"] = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    if args.footprint:
        result["serving_install"] = venv_footprint(args.work_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, args.out)
    for key, run in result["speed"].items():
        for name, row in run["runtimes"].items():
            print(f"{key:20} {name:10} {row['sentences_per_s']:9.0f} sentences/s {row['words_per_s']:10.0f} words/s "
                  f"x{row['speed_over_torch']:.2f}")
    print(json.dumps({k: result[k] for k in ("f1", "int8_f1_drop_points", "file_mib")}, indent=1))
    if "serving_install" in result:
        print(json.dumps(result["serving_install"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
