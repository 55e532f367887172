"""Both review widgets in a real browser: JupyterLab serves a notebook that runs a tiny cascade and shows
`ThresholdExplorer` and `ReassignmentReview`; headless Chromium (driven by Playwright) runs the notebook, checks the
explorer follows the split a later cell applied, moves the slider with the keyboard and checks that the counts on the
page follow, exactly as the pipeline's split would count them; then filters the review, pages, chooses an override in
the page, restarts the kernel and runs all cells again, and reads the override back. The notebook's output must show
no transformers load report, no red (failed-looking) bar and no Trainer table. A screenshot of each widget goes to
`$CASCADE_SCREENSHOT_DIR`."""
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pandas as pd
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
BIN = Path(sys.executable).parent
# "target 74 (61.7%) · unqualified 46 (38.3%) of 120 samples at f1 ≥ 0.90 — not applied (no split written yet)"
COUNTS = re.compile(r"target ([\d,]+) \(([\d.]+)%\) · unqualified ([\d,]+) \(([\d.]+)%\) of ([\d,]+) samples "
                    r"at (\w+) ≥ ([\d.]+)")

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; see .ci/browser-deps.sh)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright package is missing (pip install playwright)")

REVIEW_PAGE = 4  # samples per review page: the tiny run has several pages
# no %%capture and no verbosity settings: the notebook shows what a user's would
NOTEBOOK_CELLS = [
    """\
import json
import os
from cascade_distill.data import demo_corpus
from cascade_distill.encode import make_tiny_checkpoint
from cascade_distill.pipeline import Cascade, CascadeConfig
from cascade_distill.training import TrainConfig
from cascade_distill.widgets import ReassignmentReview, ThresholdExplorer""",
    """\
demo = demo_corpus(limit=200)
checkpoint = make_tiny_checkpoint([s.tokens for s in demo["train"]], "run/tiny-bert", max_position=128)
quick = TrainConfig(max_epochs=1, patience=1, learning_rate=5e-3, max_length=64)
# a learning rate of 1e-12 (0 is refused): nothing is learnt, so the student's dev F1 never improves after its first epoch, so early stopping ends both its phases
still = TrainConfig(max_epochs=3, patience=1, learning_rate=1e-12, max_length=64)
cascade = Cascade("run/cascade", CascadeConfig(checkpoint=checkpoint, teacher1=quick, teacher2=quick, student_training=still,
                                               student_model={"width": 16}), **demo)
cascade.run_score();""",
    """\
explorer = ThresholdExplorer(cascade)
explorer""",
    """\
cascade.apply_threshold(0.9)  # the explorer above follows: its counts line says applied
cascade.run_teacher2();""",
    f"""\
review = ReassignmentReview(cascade, page_size={REVIEW_PAGE})
review""",
    """\
cascade.run();""",
    """\
print(f"kernel {os.getpid()}: overrides on disk {json.dumps(cascade.overrides(), sort_keys=True)}")""",
]
DONE = re.compile(r"kernel (\d+): overrides on disk (\{.*\})")


def parse_counts(text: str) -> dict:
    "The numbers of the explorer's counts line."
    match = COUNTS.search(text)
    assert match, f"the counts line does not have the explorer's format: {text!r}"
    target, target_pct, unqualified, unqualified_pct, total, score, threshold = match.groups()
    number = lambda s: int(s.replace(",", ""))
    return {"target": number(target), "target_pct": float(target_pct), "unqualified": number(unqualified),
            "unqualified_pct": float(unqualified_pct), "total": number(total), "score": score,
            "threshold": float(threshold)}


def expected_counts(scores: pd.DataFrame, score: str, threshold: float) -> dict:
    "What the pipeline's split rule (score >= threshold is target) gives."
    target = int((scores[f"t1_{score}"] >= threshold).sum())
    return {"target": target, "unqualified": len(scores) - target, "total": len(scores)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(path: Path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in NOTEBOOK_CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


def start_lab(root: Path, home: Path, port: int, token: str, log_file) -> subprocess.Popen:
    "JupyterLab on 127.0.0.1:`port` with fresh config/data/runtime dirs (labextensions still come from the venv)."
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               JUPYTER_PLATFORM_DIRS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # the news toast would ask a question on first start; nothing may reach the network
    labconfig = home / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(
        '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}')
    command = [str(BIN / "jupyter"), "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=None"]
    return subprocess.Popen(command, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def wait_for_server(server: subprocess.Popen, url: str, log_path: Path, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited with {server.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer within {timeout} s:\n{log_path.read_text()[-4000:]}")


def stop(server: subprocess.Popen):
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=15)


def test_review_widgets_in_jupyterlab(tmp_path):
    root, home = tmp_path / "notebooks", tmp_path / "jupyter"
    root.mkdir()
    home.mkdir()
    write_notebook(root / "test.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    log_path = tmp_path / "jupyter.log"
    screenshot_dir = Path(os.environ.get("CASCADE_SCREENSHOT_DIR") or tmp_path)
    screenshot_dir.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}"

    with open(log_path, "wb") as log_file:
        server = start_lab(root, home, port, token, log_file)
        try:
            wait_for_server(server, f"{base}/api/status?token={token}", log_path)
            with sync_api.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1500, "height": 1300})
                page.set_default_timeout(60_000)
                try:
                    page.goto(f"{base}/lab/tree/test.ipynb?token={token}")
                    idle = page.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
                    run_all_cells(page, idle)
                    first_kernel, overrides = wait_for_last_cell(page)
                    assert overrides == {}
                    assert_quiet_output(page, bars=4)  # teachers 1 and 2, the student's two phases
                    drive_explorer(page, idle, root, screenshot_dir)
                    drive_review(page, idle, root, screenshot_dir, first_kernel)
                except Exception:
                    page.screenshot(path=str(screenshot_dir / "browser_failure.png"))
                    raise
                finally:
                    browser.close()
        except Exception as err:
            raise AssertionError(f"{err}\n--- jupyter lab log ---\n{log_path.read_text()[-3000:]}") from err
        finally:
            stop(server)


def run_all_cells(page, idle, tries: int = 3):
    "Run > Run All Cells once the kernel is idle; again if no cell got queued (a click before the session is ready)."
    first_prompt = page.locator(".jp-Cell .jp-InputPrompt").first
    for _ in range(tries):
        idle.wait_for(timeout=120_000)
        page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=60_000)  # the status bar agrees
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item", has_text=re.compile(r"^Run All Cells")).click()
        try:
            page.wait_for_function("el => /\\[(\\*|\\d+)\\]/.test(el.innerText)", arg=first_prompt.element_handle(),
                                   timeout=20_000)
            return
        except sync_api.TimeoutError:
            page.keyboard.press("Escape")
    pytest.fail(f"Run All Cells queued nothing in {tries} tries")


def wait_for_last_cell(page, not_kernel: int | None = None, timeout: float = 420_000) -> tuple[int, dict]:
    "Wait until the last cell printed its line (from a kernel other than `not_kernel`): its PID and the overrides."
    page.wait_for_function(
        "notKernel => [...document.querySelectorAll('.jp-OutputArea-output')].some(el => {"
        " const m = /kernel (\\d+): overrides on disk/.exec(el.textContent); return m && Number(m[1]) !== notKernel; })",
        arg=not_kernel if not_kernel is not None else -1, timeout=timeout)
    for text in page.locator(".jp-OutputArea-output").evaluate_all("els => els.map(el => el.textContent)"):
        match = DONE.search(text)
        if match and int(match.group(1)) != not_kernel:
            return int(match.group(1)), json.loads(match.group(2))
    pytest.fail("the last cell's line went away")


def assert_quiet_output(page, bars: int):
    "No transformers load report or weight bars, no Trainer table, no red bar; `bars` green ones, early stopping said."
    # textContent, not innerText: JupyterLab skips rendering cells out of view, and innerText leaves their text out
    text = "\n".join(page.locator(".jp-OutputArea-output").evaluate_all("els => els.map(el => el.textContent)"))
    for noise in ("LOAD REPORT", "UNEXPECTED", "Loading weights", "Writing model shards", "Training Loss",
                  "Validation Loss", "Traceback"):
        assert noise not in text, f"the notebook shows {noise!r}"
    assert page.locator(".jp-OutputArea .progress-bar-danger").count() == 0, "a red bar"
    assert page.locator(".jp-OutputArea .progress-bar-success").count() == bars
    spaced = re.sub(r"[\s\u2007\xa0]+", " ", text)  # tqdm pads its HTML with figure spaces, the page with nbsp
    bars_text = [line for line in re.sub(r"[\u2007\xa0]", " ", text).splitlines() if "epoch" in line]
    assert "stopped at epoch 2, best 1" in spaced, bars_text


def drive_explorer(page, idle, root: Path, screenshot_dir: Path):
    counts_line = page.locator(".cd-counts")
    counts_line.wait_for(timeout=300_000)  # tiny model trained, scores written, widget rendered
    # Run All left the view at the last cell: bring the explorer back, so that JupyterLab renders its plot
    page.locator(".jp-OutputArea-output", has=page.locator(".cd-counts")).evaluate(
        "el => el.scrollIntoView({block: 'start'})")
    handle = page.locator(".widget-slider .noUi-handle")
    handle.wait_for()
    # the histogram's threshold line (a vertical path has an empty box, so Playwright never deems it visible)
    page.locator(".jp-OutputArea .js-plotly-plot .shapelayer path").first.wait_for(state="attached")
    idle.wait_for(timeout=60_000)

    scores = pd.read_parquet(root / "run" / "cascade" / "scores.parquet")
    split_file = root / "run" / "cascade" / "split.parquet"
    split_bytes = split_file.read_bytes()
    # a later cell applied 0.9: the explorer, shown before, says so without being touched
    page.wait_for_function("() => document.querySelector('.cd-counts').innerText.endsWith('— applied')",
                           timeout=30_000)
    before = parse_counts(counts_line.inner_text())
    assert (before["score"], before["threshold"]) == ("f1", 0.9)  # the run's defaults
    assert {k: before[k] for k in ("target", "unqualified", "total")} == expected_counts(scores, "f1", 0.9)
    assert before["unqualified"] > 0, "every sample scores >= 0.9: moving the slider down could not change counts"
    line_before = page.locator(".js-plotly-plot .shapelayer path").first.get_attribute("d")

    def counts_after(key: str, times: int = 1) -> dict:
        old = counts_line.inner_text()
        handle.focus()
        for _ in range(times):
            handle.press(key)
        page.wait_for_function("old => document.querySelector('.cd-counts').innerText !== old", arg=old,
                               timeout=30_000)
        readout = page.locator(".widget-slider .widget-readout")
        # keys may arrive in several kernel round trips: wait until the line shows the slider's value
        page.wait_for_function(
            "() => { const r = document.querySelector('.widget-slider .widget-readout');"
            " const c = document.querySelector('.cd-counts');"
            " return r && c && c.innerText.includes('≥ ' + (r.innerText || r.value).trim()); }", timeout=30_000)
        shown = parse_counts(counts_line.inner_text())
        assert f"{shown['threshold']:.2f}" == (readout.inner_text() or readout.input_value()).strip()
        return shown

    at_zero = counts_after("Home")  # slider to the left end: every sample is target
    assert at_zero["threshold"] == 0.0
    assert (at_zero["target"], at_zero["unqualified"], at_zero["target_pct"]) == (len(scores), 0, 100.0)
    assert at_zero["target"] != before["target"]

    moved = counts_after("ArrowRight", times=3)
    assert moved["threshold"] == 0.03
    assert {k: moved[k] for k in ("target", "unqualified", "total")} == expected_counts(scores, "f1", 0.03)
    assert abs(moved["target_pct"] - 100 * moved["target"] / moved["total"]) < 0.051

    page.wait_for_function("old => document.querySelector('.js-plotly-plot .shapelayer path')"
                           ".getAttribute('d') !== old", arg=line_before, timeout=30_000)  # the line moved
    assert "not applied (the run's split: f1 ≥ 0.90)" in counts_line.inner_text()  # a slider move writes nothing
    assert split_file.read_bytes() == split_bytes

    page.mouse.move(0, 0)  # no hover label or plotly toolbar in the picture
    output = page.locator(".jp-OutputArea-output", has=page.locator(".cd-counts"))
    output.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)  # let plotly finish repainting the bars
    page.screenshot(path=str(screenshot_dir / "browser_threshold.png"),
                    clip=visible_part(output.bounding_box(), page.locator(".jp-NotebookPanel-notebook").bounding_box()))
    page.screenshot(path=str(screenshot_dir / "browser_threshold_page.png"))


def drive_review(page, idle, root: Path, screenshot_dir: Path, first_kernel: int):
    "Filter, page, choose an override in the page, Restart & Run All: the override is read back from disk."
    from cascade_distill.review import filter_review, review_frame
    table = review_frame(pd.read_parquet(root / "run" / "cascade" / "relabel.parquet"))
    output = page.locator(".jp-OutputArea-output", has=page.locator(".cd-summary"))
    summary = output.locator(".cd-summary")
    assert summary.text_content().startswith(f"{len(table):,} of {len(table):,} unqualified samples")
    # the filter value that keeps the most samples, so that there is a second page
    options = {("agrees", "no"): ("vs gold", "disagrees"), ("changed", "yes"): ("teacher 2", "changed the tags"),
               ("changed", "no"): ("teacher 2", "kept the tags")}
    kept = {key: filter_review(table, **{key[0]: key[1] == "yes"}) for key in options}
    key = max(kept, key=lambda k: len(kept[k]))
    assert len(kept[key]) > REVIEW_PAGE, f"too few unqualified samples to page: {len(kept[key])}"
    description, label = options[key]
    old = summary.text_content()
    output.locator(f'.widget-dropdown:has(label:text-is("{description}")) select').select_option(label=label)
    page.wait_for_function("old => document.querySelector('.cd-summary').textContent !== old", arg=old, timeout=30_000)
    assert summary.text_content().startswith(f"{len(kept[key]):,} of {len(table):,} unqualified samples with ")

    first_ids = output.locator(".cd-card b").all_text_contents()[:1]
    output.locator(".widget-button", has_text="Next ▶").click()
    page.wait_for_function("first => document.querySelectorAll('.cd-card b').length &&"
                           " [...document.querySelectorAll('.jp-OutputArea-output .cd-card b')].every("
                           "b => b.textContent !== first)", arg=first_ids[0], timeout=30_000)
    page_ids = kept[key].id.iloc[REVIEW_PAGE:2 * REVIEW_PAGE].tolist()
    chosen = output.locator(".cd-card b").first.text_content()
    assert chosen == page_ids[0]
    assert output.get_by_text(re.compile(r"^page 2 of")).count() == 1

    output.locator('.widget-dropdown:has(label:text-is("learn from")) select').first.select_option(label="gold only")
    page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output')]"
                           ".some(el => el.textContent.includes('saved: '))", timeout=30_000)
    on_disk = json.loads((root / "run" / "cascade" / "overrides.json").read_text())
    assert on_disk["format_version"] == 1 and on_disk["choices"] == {chosen: "gold"}
    assert on_disk["teacher2"] == json.loads((root / "run" / "cascade" / "manifest.json").read_text())[
        "teacher2"]["fingerprint"]
    page.mouse.move(0, 0)
    output.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)
    page.screenshot(path=str(screenshot_dir / "browser_review.png"),
                    clip=visible_part(output.bounding_box(), page.locator(".jp-NotebookPanel-notebook").bounding_box()))

    # Restart & Run All: the notebook's own code must neither fail nor undo the choice made in the page
    idle.wait_for(timeout=60_000)
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Kernel$")).click()
    page.locator(".lm-Menu-item", has_text=re.compile(r"^Restart Kernel and Run All Cells")).click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    kernel, overrides = wait_for_last_cell(page, not_kernel=first_kernel)
    assert kernel != first_kernel and overrides == {chosen: "gold"}
    assert_quiet_output(page, bars=2)  # the teachers are up to date; the student learns from the new choice
    page.screenshot(path=str(screenshot_dir / "browser_after_restart.png"))


def visible_part(box: dict, viewport: dict) -> dict:
    "The part of `box` inside `viewport` (both Playwright bounding boxes): the widget as it shows in the notebook."
    left, top = max(box["x"], viewport["x"]), max(box["y"], viewport["y"])
    right = min(box["x"] + box["width"], viewport["x"] + viewport["width"])
    bottom = min(box["y"] + box["height"], viewport["y"] + viewport["height"])
    return {"x": left, "y": top, "width": right - left, "height": bottom - top}
