"""The review widgets driven through their Python state: slider, Apply, filters, per-sample overrides, large corpora;
following the run on disk (a split applied elsewhere, a retrained teacher 2, stale overrides), errors in the widget."""
import json
import re
import shutil
import time

import numpy as np
import pandas as pd
import pytest
from conftest import lock_held_elsewhere

from cascade_distill.pipeline import Cascade, CascadeConfig
from cascade_distill.training import TrainConfig
from cascade_distill.review import filter_review, outcome_summary, review_frame, threshold_counts
from cascade_distill.widgets import ReassignmentReview, ThresholdExplorer, render_spans

QUICK = TrainConfig(max_epochs=1, patience=1, learning_rate=5e-3, max_length=64, progress=False, seed=1)


@pytest.fixture(scope="module")
def scored_dir(tmp_path_factory, tiny_checkpoint, tweets):
    "A run directory with teacher 1 trained and the training samples scored (no split yet)."
    run_dir = tmp_path_factory.mktemp("widgets") / "scored"
    config = CascadeConfig(checkpoint=tiny_checkpoint, teacher1=QUICK, teacher2=QUICK, student_training=QUICK, seed=1)
    Cascade(run_dir, config, **tweets).run_score()
    return run_dir


@pytest.fixture
def scored(scored_dir, tmp_path):
    "A fresh copy of the scored run, so each test starts with nothing committed."
    return Cascade(shutil.copytree(scored_dir, tmp_path / "run"))


@pytest.fixture(scope="module")
def relabelled(scored_dir, tmp_path_factory):
    "A copy of the scored run taken through teacher 2."
    cascade = Cascade(shutil.copytree(scored_dir, tmp_path_factory.mktemp("review") / "run"))
    cascade.run_teacher2()
    return cascade


def route_counts(cascade, threshold, score):
    return cascade.split_table(threshold, score).route.value_counts().to_dict()


def test_slider_moves_counts_and_threshold_line(scored):
    explorer = ThresholdExplorer(scored)
    assert explorer.threshold_line == pytest.approx(scored.config.threshold)
    counts = {}
    for threshold in (0.0, 0.5, 1.0):
        explorer.slider.value = threshold
        assert explorer.threshold_line == pytest.approx(threshold)
        expected = route_counts(scored, threshold, "f1")
        assert explorer.counts["target"] == expected.get("target", 0)
        assert explorer.counts["unqualified"] == expected.get("unqualified", 0)
        assert explorer.counts["target"] + explorer.counts["unqualified"] == len(scored.train)
        assert (explorer.type_counts.sum(axis=1) == explorer.presence.sum()).all()
        counts[threshold] = explorer.counts["target"]
    assert counts[0.0] == len(scored.train) > counts[0.5]  # teacher 1 misses entities: some samples score below 0.5
    colours = explorer.figure.data[0].marker.color
    assert len(set(colours)) == 2 and len(colours) == len(explorer.histograms["f1"])
    explorer.score_picker.value = "confidence"
    explorer.slider.value = 0.3
    assert explorer.counts["target"] == route_counts(scored, 0.3, "confidence").get("target", 0)
    assert list(explorer.figure.data[0].y) == explorer.histograms["confidence"]["count"].tolist()


def test_near_threshold_pages(scored):
    explorer = ThresholdExplorer(scored, page_size=5)
    explorer.slider.value = 0.5
    first = explorer.page_rows
    distances = np.abs(first.score.to_numpy() - 0.5)
    assert len(first) == 5 and (np.diff(distances) >= 0).all()
    explorer.next_button.click()
    assert explorer.page == 1
    assert np.abs(explorer.page_rows.score.to_numpy() - 0.5).min() >= distances.max()
    explorer.prev_button.click()
    explorer.prev_button.click()  # clipped at the first page
    assert explorer.page == 0 and explorer.prev_button.disabled
    assert all(str(i) in explorer.samples_html.value for i in first.id)


def test_apply_is_the_only_write(scored):
    split_file, config_file = scored.run_dir / "split.parquet", scored.run_dir / "config.json"
    config_before = config_file.read_bytes()
    explorer = ThresholdExplorer(scored)
    for threshold in (0.2, 0.7, 0.4):
        explorer.slider.value = threshold
    explorer.score_picker.value = "cosine"
    explorer.next_button.click()
    assert not split_file.exists()
    assert config_file.read_bytes() == config_before
    assert "no split written yet" in explorer.counts_label.value

    explorer.score_picker.value = "f1"
    explorer.slider.value = 0.4
    explorer.apply_button.click()
    written = pd.read_parquet(split_file)
    assert written.route.tolist() == scored.split_table(0.4, "f1").route.tolist()
    assert (scored.config.threshold, scored.config.score) == (0.4, "f1")
    assert Cascade(scored.run_dir.path).config.threshold == 0.4
    assert "— applied" in explorer.counts_label.value and "applied: f1 ≥ 0.40" in explorer.status.value

    snapshot = split_file.read_bytes()
    explorer.slider.value = 1.0
    assert split_file.read_bytes() == snapshot  # moving again writes nothing
    assert "not applied (the run's split: f1 ≥ 0.40)" in explorer.counts_label.value
    explorer.apply_button.click()
    assert pd.read_parquet(split_file).route.tolist() == scored.split_table(1.0, "f1").route.tolist()


def test_share_mode_counts_line_and_apply(scored):
    explorer = ThresholdExplorer(scored)
    explorer.mode_picker.value = "share"
    explorer.share_slider.value = 0.3
    n_unqualified = round(0.3 * len(scored.train))
    preview = scored.split_table(share=0.3)
    assert explorer.counts["unqualified"] == n_unqualified == (preview.route == "unqualified").sum()
    assert explorer.threshold_line == pytest.approx(preview.score[preview.route == "target"].min())
    assert not (scored.run_dir / "split.parquet").exists()
    explorer.apply_button.click()
    assert scored.config.unqualified_share == 0.3
    assert pd.read_parquet(scored.run_dir / "split.parquet").route.tolist() == preview.route.tolist()
    assert "— applied" in explorer.counts_label.value
    explorer.mode_picker.value = "threshold"  # the same split read as a threshold is not the committed rule
    assert "not applied (the run's split: f1 ≥" in explorer.counts_label.value


def test_review_overrides_reach_student_targets_and_persist(relabelled):
    review = ReassignmentReview(relabelled)
    assert len(review.table) == len(relabelled.read_table("relabel")) > 3
    dropped, gold_only, from_t1 = review.page_ids[:3]
    n_kept = len(relabelled.distillation_targets()[0])
    try:
        review.selectors[dropped].value = "drop"
        review.selectors[gold_only].value = "gold"
        review.selectors[from_t1].value = "t1"
        assert relabelled.overrides() == {dropped: "drop", gold_only: "gold", from_t1: "t1"}

        samples, soft = relabelled.distillation_targets()
        by_id = dict(zip([s.id for s in samples], soft))
        assert len(samples) == n_kept - 1 and dropped not in by_id
        assert by_id[gold_only] is None
        np.testing.assert_allclose(by_id[from_t1], relabelled.logit_store("teacher1")[from_t1])

        reopened = Cascade(relabelled.run_dir.path)  # a new kernel
        assert reopened.learning_sources()[[dropped, gold_only, from_t1]].tolist() == ["drop", "gold", "t1"]
        again = ReassignmentReview(reopened)
        assert [again.selectors[i].value for i in (dropped, gold_only, from_t1)] == ["drop", "gold", "t1"]

        again.selectors[from_t1].value = "t2"  # the default again: the override is removed
        assert from_t1 not in relabelled.overrides()
        assert relabelled.learning_sources()[from_t1] == "t2"
    finally:
        relabelled.set_overrides({i: None for i in (dropped, gold_only, from_t1)})


def test_review_filters_and_paging(relabelled):
    review = ReassignmentReview(relabelled, page_size=4)
    table = review_frame(relabelled.read_table("relabel"))
    assert review.n_pages == -(-len(table) // 4)
    review.next_button.click()
    assert review.page_ids == table.id.iloc[4:8].tolist()

    review.changed_filter.value = "no"
    assert review.filtered.id.tolist() == filter_review(table, changed=False).id.tolist()
    assert review.page == 0
    review.changed_filter.value = "any"
    review.agrees_filter.value = "no"
    assert not review.filtered.agrees.any()
    shown = outcome_summary(review.filtered).reindex(review.summary.index, fill_value=0)
    assert [trace.y for trace in review.figure.data] == [tuple(shown[o]) for o in ("fixed", "unchanged", "worse")]
    review.agrees_filter.value = "any"

    entity_type = table.gold_types.explode().dropna().value_counts().index[0]
    review.type_filter.value = entity_type
    assert len(review.filtered) and all(entity_type in t for t in review.filtered.gold_types)  # gold only
    assert review.filtered.id.tolist() == filter_review(table, entity_type=entity_type).id.tolist()
    assert f"a gold {entity_type} entity" in review.summary_label.value  # the line says what the filter matches
    review.type_filter.value = ""
    word = table.tokens.iloc[0][0]
    review.text_filter.value = word.upper()
    assert table.id.iloc[0] in review.filtered.id.tolist()
    assert all(word.lower() in text.lower() or word.lower() in i.lower()
               for text, i in zip(review.filtered.text, review.filtered.id))


def tags(*spans, n=4):
    out = ["O"] * n
    for typ, start, end in spans:
        out[start:end] = [f"B-{typ}"] + [f"I-{typ}"] * (end - start - 1)
    return out


def test_filter_review_and_outcome_summary_on_known_rows():
    toy = pd.DataFrame({
        "id": ["a", "b", "c", "d"],
        "tokens": [["Ann", "met", "Bob", "."], ["in", "Paris", "today", "!"], ["no", "names", "at", "all"],
                   ["Oslo", "is", "cold", "."]],
        "gold_tags": [tags(("PER", 0, 1), ("PER", 2, 3)), tags(("LOC", 1, 2)), tags(), tags(("LOC", 0, 1))],
        "t1_tags": [tags(("PER", 0, 1)), tags(), tags(("ORG", 1, 2)), tags(("LOC", 0, 1))],
        "t2_tags": [tags(("PER", 0, 1), ("PER", 2, 3)), tags(), tags(), tags(("PER", 0, 1))],
        "changed": [True, False, True, True],
        "outcome": ["fixed", "unchanged", "fixed", "worse"],
    })
    assert filter_review(toy, changed=True, agrees=True).id.tolist() == ["a", "c"]
    assert filter_review(toy, agrees=False, entity_type="LOC").id.tolist() == ["b", "d"]
    assert filter_review(toy, entity_type="ORG").id.tolist() == []  # ORG only in teacher 1's tags
    assert filter_review(toy, entity_type="ORG", type_in="any").id.tolist() == ["c"]
    assert filter_review(toy, text="bob").id.tolist() == ["a"]
    assert filter_review(toy, changed=False, text="bob").empty
    summary = outcome_summary(toy)
    assert summary.to_dict("index") == {
        "LOC": {"fixed": 0, "unchanged": 1, "worse": 1, "total": 2},
        "ORG": {"fixed": 1, "unchanged": 0, "worse": 0, "total": 1},
        "PER": {"fixed": 1, "unchanged": 0, "worse": 1, "total": 2}}


def test_render_spans_marks_disagreements():
    tokens = ["Ann", "Lee", "in", "<Oslo>"]
    gold = ["B-PER", "I-PER", "O", "B-LOC"]
    assert render_spans(tokens, gold).count('class="cd-entity"') == 2
    assert "&lt;Oslo&gt;" in render_spans(tokens, gold)
    pred = render_spans(tokens, ["B-PER", "O", "O", "B-ORG"], gold, {"PER": "#123456"})
    assert pred.count("cd-wrong") == 2 and pred.count('class="cd-missed"') == 3 and "#123456" in pred
    agree = render_spans(tokens, gold, gold)
    assert "cd-wrong" not in agree and "cd-missed" not in agree


def synthetic_scores(n, seed=0):
    "A scores frame of `n` short sentences with random entities and random teacher-1 scores."
    rng = np.random.default_rng(seed)
    types = np.array(["PER", "LOC", "ORG", "MISC"])
    gold, pred = [], []
    for typ, keep in zip(rng.integers(-1, 4, n), rng.random(n)):
        sentence = ["O"] * 6 if typ < 0 else [f"B-{types[typ]}", f"I-{types[typ]}", "O", "O", "O", "O"]
        gold.append(sentence)
        pred.append(sentence if keep > 0.3 else ["O"] * 6)
    return pd.DataFrame({"id": [f"s{i}" for i in range(n)], "tokens": [["w"] * 6] * n, "gold_tags": gold,
                         "t1_tags": pred, "t1_f1": rng.random(n), "t1_cosine": rng.random(n),
                         "t1_confidence": rng.random(n)})


def test_large_scores_frame_updates():
    scores = synthetic_scores(15_000)
    explorer = ThresholdExplorer(scores=scores, threshold=0.9)
    assert explorer.apply_button.disabled
    with pytest.raises(ValueError, match="no cascade"):
        explorer.apply()
    for threshold in (0.1, 0.37, 0.8):
        explorer.slider.value = threshold
        assert explorer.counts == threshold_counts(scores.t1_f1, threshold)
        assert explorer.counts["target"] == int((scores.t1_f1 >= threshold).sum())
        assert explorer.threshold_line == pytest.approx(threshold)
        target = scores.t1_f1.to_numpy() >= threshold
        has_loc = scores.gold_tags.map(lambda tags: tags[0] == "B-LOC").to_numpy()
        expected = [int((has_loc & target).sum()), int((has_loc & ~target).sum())]
        assert explorer.type_counts.loc["LOC"].tolist() == expected
        assert np.abs(explorer.page_rows.score - threshold).max() <= np.abs(scores.t1_f1 - threshold).nsmallest(
            explorer.page_size).max()
    explorer.score_picker.value = "cosine"
    assert explorer.counts["target"] == int((scores.t1_cosine >= 0.8).sum())


def test_explorer_follows_a_split_applied_elsewhere(scored):
    explorer = ThresholdExplorer(scored)
    assert "no split written yet" in explorer.counts_label.value
    Cascade(scored.run_dir.path).apply_threshold(0.5)  # another Cascade of the run (a later cell, the CLI)
    explorer.refresh()
    assert "not applied (the run's split: f1 ≥ 0.50)" in explorer.counts_label.value  # it still shows 0.90
    explorer.slider.value = 0.5
    assert explorer.counts_label.value.endswith("— applied</div>")

    watching = ThresholdExplorer(scored, watch=0.1)  # what JupyterLab gets by itself: a thread following the run
    try:
        assert watching.counts_label.value.endswith("— not applied (the run's split: f1 ≥ 0.50)</div>")
        Cascade(scored.run_dir.path).apply_threshold(0.9)
        deadline = time.monotonic() + 10
        while not watching.counts_label.value.endswith("— applied</div>") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert watching.counts_label.value.endswith("— applied</div>"), watching.counts_label.value
    finally:
        watching.close()


def test_explorer_compact_parts(scored):
    explorer = ThresholdExplorer(scored)
    assert explorer.children.index(explorer.status) < explorer.children.index(explorer.counts_label)  # on top
    header_rows = explorer.types_html.value.split("<tbody>")[0].count("<tr")
    assert header_rows == 1 and "entity type" in explorer.types_html.value  # no empty header row
    explorer.log_scale.value = True
    assert explorer.figure.layout.yaxis.type == "log"
    explorer.log_scale.value = False
    assert explorer.figure.layout.yaxis.type == "linear"


@pytest.fixture
def relabelled_copy(relabelled, tmp_path):
    "A fresh copy of the run taken through teacher 2, to change its split and teacher 2."
    return Cascade(shutil.copytree(relabelled.run_dir.path, tmp_path / "run", ignore=shutil.ignore_patterns(".lock")))


def test_review_follows_new_split_and_teacher2_and_stale_overrides(relabelled_copy):
    cascade = relabelled_copy
    review = ReassignmentReview(cascade)
    chosen = review.page_ids[0]
    review.selectors[chosen].value = "gold"
    teacher2 = cascade.run_dir.manifest["teacher2"]["fingerprint"]
    record = json.loads((cascade.run_dir / "overrides.json").read_text())
    assert record == {"format_version": 1, "teacher2": teacher2, "choices": {chosen: "gold"}}
    assert cascade.overrides_teacher2() == teacher2 and not cascade.overrides_stale()
    assert "saved:" in review.status.value and review.stale_html.value == ""

    before = len(review.table)
    cascade.apply_share(round(before / 2 / len(cascade.train), 4))  # half as many unqualified samples
    unqualified = int((cascade.read_table("split").route == "unqualified").sum())
    assert unqualified != before, "the new split must change the unqualified set for this test to mean anything"
    review.refresh()
    assert f"it has {unqualified:,} unqualified samples, this list {before:,}" in review.stale_html.value
    assert review.reload_button.layout.display is None

    cascade.run_teacher2()
    review.refresh()
    assert "teacher 2 was retrained" in review.stale_html.value
    assert cascade.overrides_stale() and "overrides chosen against an earlier teacher 2" in review.stale_html.value
    review.reload_button.click()
    assert len(review.table) == unqualified and "reloaded" in review.status.value
    assert "stale:" not in review.stale_html.value and review.reload_button.layout.display == "none"
    assert "overrides chosen against an earlier teacher 2" in review.stale_html.value  # until chosen again
    cascade.set_overrides({chosen: "gold"})
    review.refresh()
    assert not cascade.overrides_stale() and review.stale_html.value == ""


def test_review_selectors_show_what_is_on_disk(relabelled_copy):
    cascade = relabelled_copy
    review = ReassignmentReview(cascade)
    first = review.page_ids[0]
    Cascade(cascade.run_dir.path).set_overrides({first: "drop"})  # a cell (or the tutorial's code) chose
    review.refresh()
    assert review.selectors[first].value == "drop"
    assert cascade.overrides() == {first: "drop"}  # syncing the selector saved nothing else


def test_review_error_shows_in_widget_and_leaves_no_unsaved_choice(relabelled_copy):
    cascade = relabelled_copy
    review = ReassignmentReview(cascade)
    first = review.page_ids[0]
    with lock_held_elsewhere(cascade.run_dir.path) as holder:
        review.selectors[first].value = "drop"  # no exception escapes to the log console
        assert "saving the choice failed" in review.status.value and str(holder.pid) in review.status.value
        assert review.selectors[first].value == "t2"  # back to what is on disk
        assert cascade.overrides() == {}
    review.selectors[first].value = "drop"
    assert cascade.overrides() == {first: "drop"} and "saved:" in review.status.value


def test_overrides_of_an_earlier_version_read_back(relabelled_copy):
    cascade = relabelled_copy
    first = cascade.read_table("relabel").id.iloc[0]
    (cascade.run_dir / "overrides.json").write_text(json.dumps({first: "t1"}))  # version 0: a plain dict
    assert cascade.overrides() == {first: "t1"}
    assert cascade.overrides_teacher2() is None and cascade.overrides_stale()  # chosen against an unknown teacher 2
    assert cascade.learning_sources()[first] == "t1"
    cascade.set_overrides({first: "gold"})
    assert json.loads((cascade.run_dir / "overrides.json").read_text())["format_version"] == 1
    assert cascade.overrides() == {first: "gold"} and not cascade.overrides_stale()
    (cascade.run_dir / "overrides.json").write_text(json.dumps({"format_version": 7, "choices": {}}))
    with pytest.raises(ValueError, match="overrides.json: format version 7"):
        cascade.overrides()


def test_review_compact_rows_and_integer_ticks(relabelled):
    review = ReassignmentReview(relabelled, page_size=5)
    assert review.children.index(review.summary_label) < review.children.index(review.cards)  # the line on top
    card = review.cards.children[0].children[0].value
    assert card.count("<tr") == 3 and "<th" not in card  # gold, teacher 1, teacher 2; no header row
    assert "line-height:1.5" in card and ("teacher 2 changed the tags" in card or "kept teacher 1's tags" in card)
    assert "F1 " + review.filtered.outcome.iloc[0] in card
    assert review.figure.layout.yaxis.dtick >= 1 and float(review.figure.layout.yaxis.dtick).is_integer()


def test_explorer_apply_error_shows_in_widget(scored):
    explorer = ThresholdExplorer(scored)
    with lock_held_elsewhere(scored.run_dir.path) as holder:
        explorer.apply_button.click()  # the error stays in the widget: nothing raised into the log console
        assert "apply failed" in explorer.status.value and str(holder.pid) in explorer.status.value
        assert not (scored.run_dir / "split.parquet").exists()
        assert "no split written yet" in explorer.counts_label.value
    explorer.apply_button.click()
    assert "applied: f1 ≥ 0.90" in explorer.status.value and explorer.counts_label.value.endswith("— applied</div>")


def test_review_shows_the_student_result_and_when_it_is_stale(relabelled_copy):
    "After the student trains, the review shows both phases and the verdict; a later choice makes it stale."
    from cascade_distill.widgets import student_result_html
    cascade = relabelled_copy
    review = ReassignmentReview(cascade)
    assert review.result_html.value == ""
    cascade.run_student()
    review.refresh()
    report = cascade.report()
    assert review.result_html.value == student_result_html(report)
    student = report["student"]
    words = " ".join(re.sub(r"<[^>]+>", " ", review.result_html.value).split())  # the text the page shows
    for phase, name in (("gold", "gold only"), ("distill", "distilled")):
        assert f"{name} {student[f'{phase}_dev_f1']:.4f} {student[f'{phase}_test_f1']:.4f}" in words, words
    assert "<b>ships</b>" in review.result_html.value and "stale" not in review.result_html.value
    first = review.page_ids[0]
    review.selectors[first].value = "drop"
    review.refresh()
    assert "stale:" in review.result_html.value
