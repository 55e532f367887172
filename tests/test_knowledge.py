"""The student's word vectors from the teacher's static subword vectors: the run setting, the CLI option, the
vocabulary of the transfer set, and a run that changes only the student."""
import dataclasses
import shutil

import pytest
import torch

from cascade_distill.cli import build_parser, config_from_args
from cascade_distill.features import StudentConfig
from cascade_distill.knowledge import static_word_vectors, word_vector_source
from cascade_distill.pipeline import STAGES, Cascade, CascadeConfig, student_inputs
from cascade_distill.student import new_student
from cascade_distill.training import TrainConfig

QUICK = TrainConfig(max_epochs=2, patience=1, learning_rate=5e-3, max_length=64, progress=False, seed=1)


def tiny_config(checkpoint, **changes):
    return CascadeConfig(checkpoint=checkpoint, teacher1=QUICK, teacher2=QUICK,
                         student_training=dataclasses.replace(QUICK, learning_rate=3e-3, max_epochs=3), seed=1, **changes)


def test_setting_has_its_choices_and_a_cli_option():
    assert CascadeConfig().student_word_vectors == "input"
    with pytest.raises(ValueError, match="student_word_vectors"):
        CascadeConfig(student_word_vectors="hidden")
    args = build_parser().parse_args(["run", "--train", "t.txt", "--dev", "d.txt", "--student-word-vectors", "static"])
    assert config_from_args(args, CascadeConfig()).student_word_vectors == "static"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--train", "t.txt", "--dev", "d.txt", "--student-word-vectors", "hidden"])


def test_config_saved_without_the_setting_reads_as_input():
    values = CascadeConfig(student_word_vectors="static_sif").to_dict()
    assert CascadeConfig.from_dict(values).student_word_vectors == "static_sif"
    del values["student_word_vectors"]  # a run directory written before the setting
    assert CascadeConfig.from_dict(values).student_word_vectors == "input"


def test_a_word_only_the_unlabeled_text_has_gets_its_static_row(tiny_checkpoint, tweets, labels):
    "The transfer set's words join the vocabulary (as `train_student` passes them) and start from static vectors."
    train = tweets["train"][:20]
    seen = {w.lower() for s in train for w in s.tokens}
    unlabeled = [s.tokens for s in tweets["test"]]
    new_word = next(w.lower() for tokens in unlabeled for w in tokens if w.lower() not in seen)
    config = StudentConfig(labels, word_dim=16, width=16, depth=1)
    model, featurizer = new_student(train, labels, config, word_vector_source("static", tiny_checkpoint), unlabeled)
    row = featurizer.vocab.index(new_word) + 1
    expected = static_word_vectors(tiny_checkpoint, featurizer.vocab, 16)
    assert torch.allclose(model.words.weight[row], expected[row - 1], atol=1e-5)
    assert model.words.weight[row].abs().sum() > 0


@pytest.fixture(scope="module")
def input_run(tmp_path_factory, tiny_checkpoint, tweets):
    cascade = Cascade(tmp_path_factory.mktemp("run") / "r", tiny_config(tiny_checkpoint), **tweets)
    cascade.run()
    return cascade


def test_today_runs_keep_their_student_fingerprint(input_run):
    "`input` adds nothing to the student's inputs, so students finished before the setting stay finished."
    fp = input_run.fingerprints()
    config = input_run.config
    assert student_inputs(input_run, fp) == [fp["split"], fp["teacher2"], input_run.overrides(),
                                             config.student_training.to_dict(), config.temperature, config.alpha,
                                             config.init_student_embeddings, config.seed]


def test_static_word_vectors_retrain_only_the_student(tmp_path, input_run):
    changed = tmp_path / "static"
    shutil.copytree(input_run.run_dir.path, changed)
    cascade = Cascade(changed, dataclasses.replace(input_run.config, student_word_vectors="static"))
    before = cascade.run_dir.manifest
    cascade.run()
    after = cascade.run_dir.manifest
    assert all(after[stage] == before[stage] for stage in STAGES[:-1])
    assert after["student"]["fingerprint"] != before["student"]["fingerprint"]
    static, today = cascade.load_student(), input_run.load_student()
    assert static.featurizer.vocab == today.featurizer.vocab  # the same words, rows started elsewhere
    assert not torch.allclose(static.model.words.weight, today.model.words.weight, atol=1e-3)


def test_vocabulary_of_all_unlabeled_sentences(tmp_path, input_run, tweets):
    "`student_vocab_all_unlabeled`: the words of every unlabeled sentence, routed or dropped, get a row."
    unlabeled = [dataclasses.replace(s, id=f"u{i}") for i, s in enumerate(tweets["test"])]
    runs = {}
    for every in (False, True):
        folder = tmp_path / str(every)
        shutil.copytree(input_run.run_dir.path, folder)
        # no teacher 2 (threshold 0: nothing unqualified) and every unlabeled sentence unsure: unguarded, routing drops
        # them all (with the guard, teacher 1's labels stand and nothing is dropped)
        config = dataclasses.replace(input_run.config, threshold=0.0, unlabeled_threshold=1.0, teacher2_guard=False,
                                     student_word_vectors="static", student_vocab_all_unlabeled=every)
        runs[every] = Cascade(folder, config, unlabeled=unlabeled)
        runs[every].run()
    kept, _ = runs[False].transfer_targets()
    words = {w.lower() for s in unlabeled for w in s.tokens}
    vocab = {every: set(cascade.load_student().featurizer.vocab) for every, cascade in runs.items()}
    assert words <= vocab[True]
    assert {w.lower() for s in kept for w in s.tokens} <= vocab[False]
    assert len(kept) < len(unlabeled) and not words <= vocab[False]  # what the routing dropped is missing
    assert runs[True].run_dir.manifest["student"]["fingerprint"] != runs[False].run_dir.manifest["student"]["fingerprint"]
