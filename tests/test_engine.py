"""The stage engine on a toy table (no models), the cascade's table and handle, settings declared once, format versions."""
import dataclasses
import inspect
import json

import pandas as pd
import pytest

from cascade_distill import pipeline, routing
from cascade_distill.cli import build_parser, config_from_args, demo_config
from cascade_distill.config import FORMAT_VERSION, CascadeConfig, config_from_dict
from cascade_distill.engine import Stage, check_table, fingerprints, run_names, run_stage, run_stages, stage_report
from cascade_distill.settings import option_fields
from cascade_distill.store import RunDir
from cascade_distill.training import TrainConfig


class Toy:
    "A handle of the engine: a run directory, a seed, and what the toy stages read and record."
    def __init__(self, path, words=3, extra=False, fail_in=None):
        self.run_dir, self.seed, self.words, self.extra, self.fail_in = RunDir(path), 0, words, extra, fail_in
        self.ran = []


def _work(name, write):
    def work(toy, scratch):
        toy.ran.append(name)
        if toy.fail_in == name:
            raise RuntimeError(f"{name} failed")
        (toy.run_dir / f"{name}.txt").write_text(write(toy))
        return {"value": write(toy)}
    return work


TABLE = (
    Stage("a", "first", (), ("a.txt",), lambda t, fp: [t.words], _work("a", lambda t: "a" * t.words)),
    Stage("x", "only with extra", ("a",), ("x.txt",), lambda t, fp: [fp["a"]], _work("x", lambda t: "x"),
          when=lambda t: t.extra),
    Stage("b", "second", ("a", "x"), ("b.txt",), lambda t, fp: [fp["a"], fp.get("x")], _work("b", lambda t: "b")),
    Stage("c", "third", ("b",), ("c.txt",), lambda t, fp: [fp["b"]], _work("c", lambda t: "c")),
)


def test_a_failed_stage_is_not_recorded_and_a_rerun_resumes_at_it(tmp_path):
    toy = Toy(tmp_path / "run", fail_in="b")
    with pytest.raises(RuntimeError, match="b failed"):
        run_stages(TABLE, toy)
    assert list(toy.run_dir.manifest) == ["a"] and not (tmp_path / "run" / "c.txt").exists()
    toy.fail_in = None
    toy.ran.clear()
    run_stages(TABLE, toy)
    assert toy.ran == ["b", "c"]  # a was up to date
    assert list(stage_report(TABLE, toy)) == ["a", "b", "c"]


def test_a_changed_input_reruns_only_what_depends_on_it(tmp_path):
    toy = Toy(tmp_path / "run")
    run_stages(TABLE, toy)
    before = fingerprints(TABLE, toy)
    toy.ran.clear()
    run_stage(TABLE, "c", toy)
    assert toy.ran == []
    toy.words = 4
    assert all(fingerprints(TABLE, toy)[name] != before[name] for name in before)
    run_stage(TABLE, "b", toy)
    assert toy.ran == ["a", "b"]  # c is not needed by b


def test_a_conditional_stage_joins_only_its_runs(tmp_path):
    plain, extra = Toy(tmp_path / "plain"), Toy(tmp_path / "extra", extra=True)
    run_stages(TABLE, plain)
    run_stages(TABLE, extra)
    assert run_names(TABLE, plain) == ["a", "b", "c"] and list(plain.run_dir.manifest) == ["a", "b", "c"]
    assert run_names(TABLE, extra) == ["a", "x", "b", "c"] and list(extra.run_dir.manifest) == ["a", "x", "b", "c"]
    assert fingerprints(TABLE, plain)["a"] == fingerprints(TABLE, extra)["a"]
    assert fingerprints(TABLE, plain)["b"] != fingerprints(TABLE, extra)["b"]


def test_a_table_out_of_order_is_refused():
    with pytest.raises(ValueError, match="'b' needs a, x, which must come before it"):
        check_table(TABLE[2:])
    with pytest.raises(ValueError, match="'a' appears twice"):
        check_table(TABLE + TABLE[:1])


def test_the_cascade_table_is_one_tuple_of_rows_naming_module_functions():
    assert isinstance(pipeline.STAGE_TABLE, tuple)
    assert pipeline.ALL_STAGES == ("teacher1", "transfer", "score", "split", "teacher2", "transfer_relabel", "student")
    assert list(check_table(pipeline.STAGE_TABLE)) == list(pipeline.ALL_STAGES)
    for stage in pipeline.STAGE_TABLE:
        assert callable(stage.work) and not isinstance(stage.work, str), stage.name
        assert getattr(pipeline, stage.work.__name__) is stage.work, stage.name  # a module-level function
    transfer = [s.name for s in pipeline.STAGE_TABLE if s.when is not None]
    assert transfer == ["transfer", "transfer_relabel"]
    assert pipeline.LOGIT_STORES == {"teacher1": "teacher1_logits", "teacher2": "teacher2_logits",
                                     "transfer_teacher1": "transfer_logits",
                                     "transfer_teacher2": "transfer_teacher2_logits"}


def test_every_cascade_method_is_defined_in_the_class_body():
    "No method attached later (`@patch`, `setattr`): a code browser finds each where the class is."
    source = inspect.getsource(pipeline.Cascade)
    for name in ("run", "run_stage", "fingerprints", "split_table", "set_overrides", "distillation_targets",
                 "transfer_targets", "fit_student", "report_table", *(f"run_{s}" for s in pipeline.ALL_STAGES)):
        assert name in pipeline.Cascade.__dict__, name
        assert f"def {name}(" in source, name
    assert "@patch" not in inspect.getsource(pipeline) and "setattr(Cascade" not in inspect.getsource(pipeline)


def test_every_setting_has_help_and_a_generated_option():
    run_help = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for cls, prefix in ((CascadeConfig, ""), (TrainConfig, ""), (TrainConfig, "student-")):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
        for f in option_fields(cls):
            assert f"--{prefix}{f.name.replace('_', '-')}" in run_help, f.name


@pytest.mark.parametrize("flags, problem", [
    (["--alpha", "1.5"], "alpha must be between 0 and 1, got 1.5"),
    (["--temperature", "0"], "temperature must be greater than 0"),
    (["--focal-gamma", "-0.5"], "focal_gamma must be at least 0"),
    (["--transfer-epochs", "0"], "transfer_epochs must be at least 1"),
    (["--max-epochs", "0"], "teacher1: max_epochs must be at least 1, got 0"),
    (["--patience", "0"], "teacher1: patience must be at least 1"),
    (["--batch-size", "0"], "teacher1: batch_size must be at least 1"),
    (["--learning-rate", "0"], "teacher1: learning_rate must be greater than 0"),
    (["--warmup", "1"], "teacher1: warmup must be between 0 and 1 (below 1)"),
    (["--max-length", "2"], "teacher1: max_length must be at least 3"),
    (["--student-eval-batch-size", "0"], "student_training: eval_batch_size must be at least 1"),
    (["--student-width", "0"], "student_model.width must be at least 1, got 0"),
    (["--student-dropout", "1.0"], "student_model.dropout must be between 0 and 1 (below 1)"),
    (["--folds", "1"], "folds must be 0 (off) or at least 2"),
])
def test_an_invalid_option_fails_when_the_config_is_made(flags, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        config_from_args(build_parser().parse_args(["demo", *flags]), demo_config())


def test_config_format_version_and_its_migrations():
    saved = CascadeConfig(threshold=0.8).to_dict()
    assert saved["format_version"] == FORMAT_VERSION == 4
    assert saved["teacher1"]["lr_scheduler"] == "constant_with_warmup"
    version1 = {**saved, "format_version": 1, "teacher1": {k: v for k, v in saved["teacher1"].items()
                                                           if k != "lr_scheduler"}}
    assert config_from_dict(version1).teacher1.lr_scheduler == "linear"  # what a version-1 run was trained with
    version2 = {k: v for k, v in saved.items() if k != "teacher_case_types"} | {"format_version": 2}
    assert config_from_dict(version2).teacher_case_types is False  # before "auto": teachers blind to case
    assert config_from_dict(saved).teacher_case_types == "auto"
    version3 = {k: v for k, v in saved.items() if k != "teacher2_guard"} | {"format_version": 3}
    assert config_from_dict(version3).teacher2_guard is False  # before the guard: teacher 2 relabelled all unsure text
    assert config_from_dict(saved).teacher2_guard is True
    assert config_from_dict(saved) == CascadeConfig(threshold=0.8)
    unversioned = {k: v for k, v in saved.items() if k != "format_version"}
    unversioned["student"] = unversioned.pop("student_training")
    assert config_from_dict(unversioned) == CascadeConfig(threshold=0.8)
    with pytest.raises(ValueError, match="run/config.json: format version 5 is newer than this cascade_distill"):
        config_from_dict({**saved, "format_version": 5}, "run/config.json")
    with pytest.raises(ValueError, match="format_version must be a whole number"):
        config_from_dict({**saved, "format_version": "1"})


def test_overrides_record_teacher2_and_read_the_unversioned_file(tmp_path):
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps({"s1": "gold"}))  # the unversioned layout
    saved = routing.read_overrides(path)
    assert saved == {"teacher2": None, "choices": {"s1": "gold"}}
    assert routing.overrides_stale(saved, "fp")  # chosen against an unknown teacher 2
    routing.write_overrides(path, routing.changed_overrides(saved["choices"], {"s2": "drop"}, {"s1", "s2"}), "fp")
    assert json.loads(path.read_text()) == {"format_version": 1, "teacher2": "fp",
                                            "choices": {"s1": "gold", "s2": "drop"}}
    assert not routing.overrides_stale(routing.read_overrides(path), "fp")
    assert routing.overrides_stale(routing.read_overrides(path), "another")


def test_learning_sources_follow_routes_then_overrides():
    split = pd.DataFrame({"id": ["a", "b", "c"], "route": ["target", "unqualified", "unqualified"]})
    assert routing.learning_sources(split, {"b"}, {}).tolist() == ["t1", "t2", "gold"]
    assert routing.learning_sources(split, {"b"}, {"a": "t2", "b": "drop"}).tolist() == ["gold", "drop", "gold"]


def test_cascade_methods_take_what_the_functions_they_delegate_to_take():
    "`cascade.fit_student(...)` is called positionally by the benchmark: the same parameters as `fit_run_student`."
    method = list(inspect.signature(pipeline.Cascade.fit_student).parameters)[1:]
    function = list(inspect.signature(pipeline.fit_run_student).parameters)[1:]
    assert method == function
    assert list(inspect.signature(pipeline.Cascade.split_table).parameters)[1:] == \
        list(inspect.signature(pipeline.preview_split).parameters)[1:]
