"""Shared fixtures: real tweets from the embedded corpus and a tiny BERT checkpoint built offline from them."""
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from cascade_distill.data import demo_corpus, label_list  # noqa: E402
from cascade_distill.encode import make_tiny_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def tweets():
    "A seeded train/dev/test split of the first 240 embedded tweets."
    return demo_corpus(seed=0, limit=240)


@pytest.fixture(scope="session")
def labels(tweets):
    return label_list(tweets["train"])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tweets):
    "A tiny random BERT with a WordPiece tokenizer trained on the tweets."
    folder = tmp_path_factory.mktemp("tiny") / "tiny-bert"
    sentences = [s.tokens for part in tweets.values() for s in part]
    return make_tiny_checkpoint(sentences, folder, max_position=128)


HOLDER = """
import sys, time
from cascade_distill.store import RunDir
with RunDir(sys.argv[1]).locked():
    print("held", flush=True)
    time.sleep(120)
"""


@contextmanager
def lock_held_elsewhere(run_dir):
    "A separate live process holding the lock of `run_dir` for the block (yields that process)."
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)
