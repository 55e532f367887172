"""`teacher_case_types="auto"`, the default (issue #21 item 1): resolved per encoder from its config, the resolved value
in the teachers' fingerprints, format-3 migration keeping older runs off, the benchmark pinned off, the CLI and demo."""
import dataclasses
import json
import logging
import sys

import pytest
from transformers import (DebertaV2Config, DistilBertConfig, DistilBertModel, ElectraConfig, MPNetConfig,
                          XLMRobertaConfig)

from cascade_distill.benchmark import BenchConfig
from cascade_distill.cli import build_parser, config_from_args, demo_config
from cascade_distill.config import FORMAT_VERSION, CascadeConfig
from cascade_distill.console import LOGGER_NAME
from cascade_distill.encode import (can_read_case_types, case_types_of, default_checkpoint, load_tokenizer,
                                    resolve_case_types)
from cascade_distill.pipeline import Cascade, loss_inputs, reads_case_types
from cascade_distill.store import fingerprint
from cascade_distill.training import TrainConfig

from conftest import REPO

QUICK = TrainConfig(max_epochs=1, patience=1, batch_size=16, learning_rate=5e-3, max_length=64, progress=False, seed=1)


@pytest.fixture(scope="module")
def distilbert_checkpoint(tiny_checkpoint, tmp_path_factory):
    "A tiny DistilBERT (no token type embeddings), built offline and saved with the tiny BERT's tokenizer."
    folder = tmp_path_factory.mktemp("distil") / "tiny-distilbert"
    tokenizer = load_tokenizer(tiny_checkpoint)
    DistilBertModel(DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                                     max_position_embeddings=128)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def said():
    "The lines the `cascade_distill` logger says during the test."
    lines = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    log = logging.getLogger(LOGGER_NAME)
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield lines
    log.removeHandler(handler)
    log.setLevel(level)


def teacher1_fingerprint(folder, config: CascadeConfig, tweets) -> str:
    return Cascade(folder, config, **tweets).fingerprints(until="teacher1")["teacher1"]


def todays_teacher1_fingerprint(cascade: Cascade) -> str:
    "Teacher 1's fingerprint as computed before `auto` (cross-entropy, no case types): the same four inputs."
    c = cascade.config
    return fingerprint("teacher1", cascade.fingerprints_of_data, c.encoder, c.teacher1.to_dict(), c.seed)


def test_auto_is_the_default_and_resolves_per_encoder(tiny_checkpoint, distilbert_checkpoint, said):
    assert CascadeConfig().teacher_case_types == "auto"
    assert [resolve_case_types(s, tiny_checkpoint) for s in ("auto", True, False)] == [True, True, False]
    assert [resolve_case_types(s, distilbert_checkpoint) for s in ("auto", True, False)] == [False, True, False]
    assert (can_read_case_types(tiny_checkpoint), can_read_case_types(distilbert_checkpoint)) == (True, False)
    assert resolve_case_types("auto", default_checkpoint())  # the embedded MiniLM-L6 is a BERT: offline, on
    assert said == []  # nothing said without a `log`
    resolve_case_types("auto", distilbert_checkpoint, logging.getLogger(LOGGER_NAME).info)
    assert len(said) == 1 and "tiny-distilbert: DistilBertModel has no token type embeddings" in said[0]
    with pytest.raises(ValueError, match="teacher_case_types must be one of auto, True, False"):
        CascadeConfig(teacher_case_types="sometimes")


@pytest.mark.parametrize("config, reads", [
    (XLMRobertaConfig(type_vocab_size=1), True),  # one row, resized like BERT's two (see encode)
    (ElectraConfig(), True),
    (DebertaV2Config(type_vocab_size=0), False),  # DeBERTa-v2/v3 builds no table without token types
    (MPNetConfig(), False),
])
def test_auto_is_decided_from_the_config_alone(tmp_path, config, reads):
    "A folder with nothing but config.json: no weights are read to decide."
    config.save_pretrained(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
    assert resolve_case_types("auto", tmp_path) is reads


def test_auto_on_a_bert_is_the_same_teacher_as_true(tiny_checkpoint, tweets, tmp_path):
    config = CascadeConfig(checkpoint=tiny_checkpoint, teacher1=QUICK, teacher2=QUICK)
    cascade = Cascade(tmp_path / "auto", config, **tweets)
    assert reads_case_types(cascade, "teacher1") and reads_case_types(cascade, "teacher2")
    auto = cascade.fingerprints(until="teacher1")["teacher1"]
    on = teacher1_fingerprint(tmp_path / "on", dataclasses.replace(config, teacher_case_types=True), tweets)
    off = teacher1_fingerprint(tmp_path / "off", dataclasses.replace(config, teacher_case_types=False), tweets)
    assert auto == on != off
    assert off == todays_teacher1_fingerprint(cascade)  # False: exactly the inputs of before
    assert loss_inputs(config, True) == ["case_types"] and loss_inputs(config, False) == []


def test_auto_on_a_distilbert_is_off_said_once_and_trains(distilbert_checkpoint, tweets, tmp_path, said):
    config = CascadeConfig(checkpoint=distilbert_checkpoint, teacher1=QUICK, teacher2=QUICK, seed=1, threshold=0.99)
    cascade = Cascade(tmp_path / "run", config, **tweets)
    off = teacher1_fingerprint(tmp_path / "off", dataclasses.replace(config, teacher_case_types=False), tweets)
    assert cascade.fingerprints(until="teacher1")["teacher1"] == off == todays_teacher1_fingerprint(cascade)
    assert said == []  # fingerprints say nothing; the training stage does
    cascade.run_stage("teacher2")
    assert (cascade.split_table().route == "unqualified").any()  # so that teacher 2 was trained
    teacher1, _ = cascade.load_teacher1()
    teacher2, _ = cascade.load_teacher2()
    assert case_types_of(teacher1) == case_types_of(teacher2) == 0
    notes = [line for line in said if "no token type embeddings" in line]
    assert notes == [f"{distilbert_checkpoint}: DistilBertModel has no token type embeddings, so the teachers do not "
                     "read word case (teacher_case_types auto)"]


def test_true_on_a_distilbert_is_refused_by_name(distilbert_checkpoint, tweets, tmp_path):
    config = CascadeConfig(checkpoint=distilbert_checkpoint, teacher1=QUICK, teacher_case_types=True)
    cascade = Cascade(tmp_path / "run", config, **tweets)
    with pytest.raises(ValueError, match=r"tiny-distilbert: DistilBertForTokenClassification has no token type "
                                         r"embeddings, so it cannot read word case as token types"):
        cascade.run_stage("teacher1")


def test_teacher2_from_another_pretrained_encoder_resolves_on_that_one(tiny_checkpoint, distilbert_checkpoint,
                                                                       tweets, tmp_path):
    config = CascadeConfig(checkpoint=tiny_checkpoint, teacher2_init="pretrained",
                           teacher2_checkpoint=distilbert_checkpoint)
    cascade = Cascade(tmp_path / "run", config, **tweets)
    assert (reads_case_types(cascade, "teacher1"), reads_case_types(cascade, "teacher2")) == (True, False)


def old_config_file(run_dir, version: int, with_key: bool):
    "Rewrite the run's config.json as an earlier format version wrote it (without `teacher_case_types` if not `with_key`)."
    path = run_dir / "config.json"
    saved = json.loads(path.read_text())
    assert saved["format_version"] == FORMAT_VERSION
    saved["format_version"] = version
    if not with_key:
        saved.pop("teacher_case_types")
    path.write_text(json.dumps(saved, indent=1))


@pytest.mark.parametrize("with_key", [False, True])
def test_a_format2_run_keeps_case_types_off_and_its_finished_teacher1(tiny_checkpoint, tweets, tmp_path, with_key):
    "A run of format 2 (the key absent, or false as the option's first version wrote it): off, teacher 1 finished."
    run_dir = tmp_path / "run"
    before = Cascade(run_dir, CascadeConfig(checkpoint=tiny_checkpoint, teacher1=QUICK, teacher_case_types=False),
                     **tweets)
    before.run_stage("teacher1")
    finished = before.run_dir.manifest["teacher1"]["fingerprint"]
    assert finished == todays_teacher1_fingerprint(before)
    old_config_file(run_dir, 2, with_key)
    reopened = Cascade(run_dir)  # as `cascade-distill` or a notebook reopens a run
    assert reopened.config.teacher_case_types is False
    assert reopened.fingerprints(until="teacher1")["teacher1"] == finished
    assert reopened.run_dir.finished("teacher1", finished)
    assert json.loads((run_dir / "config.json").read_text())["format_version"] == FORMAT_VERSION  # rewritten once, still off
    assert Cascade(run_dir).config.teacher_case_types is False
    # today's default on the same run would be another teacher 1 (it reads case on a BERT)
    assert teacher1_fingerprint(tmp_path / "new", dataclasses.replace(reopened.config, teacher_case_types="auto"),
                                tweets) != finished


def test_the_benchmark_keeps_case_types_off(tiny_checkpoint, tweets, tmp_path):
    "Every recorded protocol was measured with case types off: BenchConfig pins them, so its fingerprints stay."
    config = BenchConfig(checkpoint=tiny_checkpoint).cascade_config(0)
    assert config.teacher_case_types is False
    cascade = Cascade(tmp_path / "bench", config, **tweets)
    assert cascade.fingerprints(until="teacher1")["teacher1"] == todays_teacher1_fingerprint(cascade)
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import cascade_bench
        import knowledge_bench
    finally:
        sys.path.remove(str(REPO / "bench"))
    assert all(knowledge_bench.run_config(0, v).teacher_case_types is False for v in knowledge_bench.VARIANTS.values())
    chosen = {word: cascade_bench.bench_config(cascade_bench.parse_args(["--teacher-case-types", word]))
              for word in ("off", "on", "auto")}
    assert {word: bench.teacher_case_types for word, bench in chosen.items()} == {"off": False, "on": True,
                                                                                 "auto": "auto"}
    assert cascade_bench.bench_config(cascade_bench.parse_args([])).teacher_case_types is False


def test_the_cli_flag_and_the_demo():
    def given(*flags):
        return config_from_args(build_parser().parse_args(["run", "--train", "t.txt", "--dev", "d.txt", *flags]),
                                CascadeConfig()).teacher_case_types
    assert [given(), given("--teacher-case-types"), given("--teacher-case-types", "auto"),
            given("--teacher-case-types", "off"), given("--no-teacher-case-types")] == ["auto", True, "auto", False,
                                                                                       False]
    demo = demo_config()
    assert demo.teacher_case_types == "auto" and resolve_case_types(demo.teacher_case_types, demo.encoder)
