"""The dashboard in a real browser: Playwright driving Debian's chromium, headless.

Each page is saved as a screenshot to $TUNELAB_UI_SCREENSHOTS (default: a temporary folder)
and checked for real content; with TUNELAB_UI_DOCS_SCREENSHOTS=1 they go to docs/img/ instead,
where the README links them."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.serve.conftest import KEY
from tests.ui.conftest import train_run

CHROMIUM = "/usr/bin/chromium"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "img"
TIMEOUT_MS = 120_000  # the shared test machine can be slow; every wait is for something to appear
# one slow optimizer step, so the live curve is seen gaining points rather than arriving whole
STEP_PAUSE_SECONDS = 0.4


def _install_chromium() -> None:
    """Debian's chromium, installed with apt when missing and running as root."""
    if Path(CHROMIUM).exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (as root), or `make browser`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)


@pytest.fixture(scope="session")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    _install_chromium()
    with playwright_api.sync_playwright() as p:
        # --no-sandbox: chromium refuses to run its sandbox as root (CI containers)
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, server):
    url, _ = server
    context = browser.new_context(viewport={"width": 1200, "height": 900}, base_url=url)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    if os.environ.get("TUNELAB_UI_DOCS_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        return DOCS_IMAGES
    folder = os.environ.get("TUNELAB_UI_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("ui-screenshots")


def shoot(page, folder: Path, name: str) -> Path:
    """A full-page screenshot, checked to hold a real page: not tiny, not one flat colour."""
    from PIL import Image

    path = folder / f"dashboard-{name}.png"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path}: suspiciously small screenshot"
    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, f"{path}: nearly uniform screenshot"
    return path


def log_in(page, key: str = KEY) -> None:
    page.goto("/ui")
    page.get_by_label("API key").fill(key)
    page.get_by_label("API key").press("Enter")


def test_wrong_key_shows_nothing_but_the_login(page, shots):
    log_in(page, "wrong-key-0000")
    page.get_by_text("That key was not accepted.").wait_for()
    assert page.locator("#app").is_hidden()
    assert "memo" not in page.locator("body").inner_text()
    assert page.evaluate("sessionStorage.getItem('tunelab.key')") is None
    shoot(page, shots, "login")


def test_key_opens_the_runs_list_and_stays_for_the_tab(page, shots):
    log_in(page)
    row = page.locator("#runs-table tr", has=page.get_by_role("link", name="memo"))
    row.wait_for()
    assert "succeeded" in row.inner_text() and "lora" in row.inner_text()
    assert KEY not in page.url
    page.reload()  # the key is kept in this tab's sessionStorage: no second login
    page.get_by_role("link", name="memo").wait_for()
    assert page.locator("#login").is_hidden()
    shoot(page, shots, "runs")


def test_uploaded_file_with_a_planted_bad_line_is_reported_at_that_line(page, shots):
    rows = [json.dumps({"prompt": f"What is item {i}?", "completion": f"Item {i} is a thing."}) for i in range(12)]
    rows[6] = '{"prompt": "no closing quote'
    rows.append(rows[1])  # a duplicate of line 2, at line 13
    rows.append(json.dumps({"prompt": "Who to mail?", "completion": "Write to jane.doe@example.com"}))
    log_in(page)
    page.get_by_role("link", name="Data").click()
    page.get_by_label("JSONL or CSV file").set_input_files(
        {"name": "planted.jsonl", "mimeType": "application/json", "buffer": ("\n".join(rows) + "\n").encode()})
    page.get_by_role("button", name="Check").click()
    errors = page.locator("table", has=page.locator("caption", has_text="Errors"))
    errors.wait_for()
    assert errors.locator("tbody tr").count() == 1
    assert errors.locator("tbody tr td").first.inner_text() == "7"
    findings = page.locator("table", has=page.locator("caption", has_text="Findings")).inner_text()
    assert "duplicate" in findings and "2, 13" in findings and "pii_email" in findings
    assert page.locator("#data-report svg rect").count() >= 1  # the token histogram
    shoot(page, shots, "data")


def test_run_page_shows_the_eval_table_flags_and_data_card(page, shots):
    log_in(page)
    page.get_by_role("link", name="memo").click()
    page.get_by_role("heading", name="Base vs tuned").wait_for()
    table = page.locator("h3:has-text('Base vs tuned') + table").inner_text()
    assert "rougeL" in table and "base" in table and "tuned" in table
    flags = page.locator("#run-eval .flags").inner_text()
    assert "overfitting" in flags and "bias" in flags and "general QA" in flags
    assert "train" in page.locator("#run-card").inner_text()
    assert page.locator("#run-chart path.series").count() == 2  # train and validation loss
    shoot(page, shots, "run")


def test_live_loss_curve_gains_points_while_a_run_trains(page, shots, server, runs_dir, tiny_model, memo_data):
    def slow_steps(event):
        if event.get("event") == "step":
            time.sleep(STEP_PAUSE_SECONDS)

    failure: list[BaseException] = []

    def train():
        try:
            train_run(tiny_model, memo_data, runs_dir / "live", epochs=16, events=slow_steps)
        except BaseException as exc:  # reported by the test below
            failure.append(exc)

    worker = threading.Thread(target=train, daemon=True)
    worker.start()
    try:
        metrics = runs_dir / "live" / "metrics.jsonl"
        for _ in range(1200):  # the run's first logged step
            if metrics.is_file() and metrics.read_text().strip() or failure:
                break
            time.sleep(0.1)
        assert not failure, failure
        log_in(page)
        page.goto("/ui#/run/live")
        page.locator("#run-live").wait_for()  # the page follows the metrics stream
        first = _train_points(page)
        page.wait_for_function(f"() => {{ const t = document.querySelector('#run-chart .legend li');"
                               f" return t && Number(t.textContent.match(/\\((\\d+)\\)/)[1]) > {first}; }}")
        assert _train_points(page) > first
        shoot(page, shots, "live")
        page.get_by_text("Training succeeded.").wait_for()
        assert page.locator("#run-live").is_hidden()
        assert _train_points(page) == len([r for r in map(json.loads, metrics.read_text().splitlines())
                                           if "loss" in r])
    finally:
        worker.join(timeout=300)
    assert not failure, failure


def _train_points(page) -> int:
    legend = page.locator("#run-chart .legend li").first.inner_text()  # "train loss (N)"
    return int(legend.rsplit("(", 1)[1].rstrip(")"))


def test_compare_overlays_the_chosen_runs(page, shots):
    log_in(page)
    page.get_by_role("link", name="Compare").click()
    page.get_by_label("memo", exact=True).check()
    page.get_by_label("Curve").select_option("loss")
    page.get_by_role("button", name="Draw").click()
    page.locator("#compare-chart path.series").first.wait_for()
    assert "memo" in page.locator("#compare-chart .legend").inner_text()
    assert "memo" in page.locator("#compare-table").inner_text()
    shoot(page, shots, "compare")


def test_playground_streams_two_answers_and_stores_the_preference(page, shots, server, tmp_path):
    from tunelab.serve.feedback import export_preferences

    _, db = server
    log_in(page)
    page.get_by_role("link", name="Playground").click()
    tuned = page.locator("#play-model-b option", has_text=":memo")
    tuned.first.wait_for(state="attached")
    assert page.locator("#play-model-b").input_value().endswith(":memo")
    assert page.locator("#play-model-a").input_value() != page.locator("#play-model-b").input_value()
    page.get_by_label("Prompt").fill("Code word 3?")
    page.get_by_label("Max tokens").fill("12")
    with page.expect_response(lambda r: r.url.endswith("/v1/chat/completions")) as streamed:
        page.get_by_role("button", name="Send to both").click()
    assert streamed.value.headers["content-type"].startswith("text/event-stream")
    page.locator("#answer-a.finished").wait_for()
    page.locator("#answer-b.finished").wait_for()
    answer_b = page.locator("#answer-b .text").inner_text()
    assert page.locator("#answer-a .text").inner_text().strip() and answer_b.strip()
    page.get_by_role("button", name="B is better").click()
    page.get_by_text("Stored: B marked better.").wait_for()
    page.get_by_role("button", name="Bad answer from A").click()
    page.get_by_text("Stored: bad on A.").wait_for()
    shoot(page, shots, "playground")
    with sqlite3.connect(db) as con:
        ratings = con.execute("SELECT rating FROM feedback WHERE rating IS NOT NULL ORDER BY ts").fetchall()
    assert ratings[-2:] == [(1,), (-1,)]
    pairs, _ = export_preferences(db, tmp_path / "pairs.jsonl")
    exported = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert pairs >= 1 and exported[-1]["chosen"] == answer_b
    assert exported[-1]["prompt"] == [{"role": "user", "content": "Code word 3?"}]


def test_new_job_form_launches_a_job_that_trains_to_succeeded(page, shots, jobs_db, memo_data, tiny_model):
    from tests.jobs.conftest import worker_thread

    log_in(page)
    page.get_by_role("link", name="New job").click()
    assert page.get_by_label("Base model").input_value() == tiny_model
    page.get_by_label("Training file (JSONL)").set_input_files(str(memo_data))
    page.get_by_label("Epochs").fill("3")
    page.get_by_label("Batch size").fill("4")
    page.get_by_label("Suffix of the model's name (optional)").fill("dash")
    page.get_by_role("button", name="Launch").click()
    page.locator("#job-status").wait_for()
    assert page.locator("#job-status").inner_text() in ("validating_files", "queued")  # no worker yet
    with worker_thread(jobs_db, lease_s=30):
        page.locator("#job-status", has_text="succeeded").wait_for(timeout=300_000)
    assert ":dash:ftjob" in page.locator("#new-job code").inner_text()
    legend = page.locator("#job-chart .legend li").first.inner_text()  # "train loss (N)"
    assert int(legend.rsplit("(", 1)[1].rstrip(")")) >= 1
    assert "successfully completed" in page.locator("#new-job table").inner_text()
    shoot(page, shots, "new-job")
    page.get_by_role("link", name="Runs").click()
    page.locator("#jobs-table", has_text="succeeded").wait_for()


def test_keyboard_alone_reaches_a_page_and_every_control_is_labelled(page):
    page.goto("/ui")
    # the key field takes the focus once the script has run: type only then (a busy machine is slow)
    page.wait_for_function("document.activeElement && document.activeElement.id === 'login-key'")
    page.keyboard.type(KEY)
    page.keyboard.press("Enter")
    page.get_by_role("link", name="memo").wait_for()
    for _ in range(12):  # tab through the skip link and the menu to "Data"
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Data":
            break
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Check a data file").wait_for()
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute('aria-label') && !c.textContent.trim())
        .map((c) => c.outerHTML)""")
    assert unlabelled == []
