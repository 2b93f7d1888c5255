"""`archsearch report`: the report every run writes at its end, opened in a real headless browser
(Debian's chromium through Playwright): no console errors, every image decoded, the summary holding the
run's real accuracy, a screenshot kept as an artifact; the comparison page of two runs; a failing report
is a warning, never a failed run; TensorBoard gets the heatmap and cell images."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import MAIN, REPO
from tests.report.toy_runs import RUNS, toy_run


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module. Skipped only where chromium is missing and CI is unset."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and playwright are needed for the report tests in CI (.ci/run installs them)")
        pytest.skip("chromium (or playwright) is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser, html: Path, screenshot: Path) -> tuple[object, list[str]]:
    """Open `html` from a file:// URL; (the page, its console errors and failed requests), screenshot saved."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(f"failed request {request.url}"))
    page.goto(html.resolve().as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")
    return page, errors


def check_images(page) -> int:
    widths = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.src.slice(0, 22)])")
    assert widths, "the page has no images"
    for complete, width, src in widths:
        assert complete and width > 0, widths
        assert src == "data:image/png;base64,", widths  # inline: the page needs no other file and no network
    return len(widths)


def summary_cell(page, label: str) -> str:
    return page.locator(f'#summary td[data-key="{label}"]').inner_text()


def test_every_registered_algorithm_has_a_toy_run():
    from archsearch.search.strategy import STRATEGIES

    # a new strategy must add its run to tests/report/toy_runs.py, and then its report is opened too
    assert set(STRATEGIES) <= {algo for _, algo, _, _ in RUNS}, set(STRATEGIES) - {algo for _, algo, _, _ in RUNS}


def test_the_report_of_every_algorithm_opens_cleanly_in_a_browser(browser, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs")
    # the screenshots are the test's artifact: $ARCHSEARCH_TEST_ARTIFACTS keeps them (CI), else pytest's tmp
    artifacts = os.environ.get("ARCHSEARCH_TEST_ARTIFACTS")
    shots = Path(artifacts) / "report_screenshots" if artifacts else tmp_path_factory.mktemp("screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    for name, algo, space, extra in RUNS:
        folder = toy_run(name, algo, space, extra, logdir)
        html = folder / "report.html"
        assert html.is_file(), f"{name}: the run wrote no report.html ({folder})"
        text = html.read_text()
        assert "http://" not in text and "https://" not in text, f"{name}: the report reaches out to the network"
        page, errors = open_page(browser, html, shots / f"{name}.png")
        assert not errors, (name, errors)
        n_images = check_images(page)
        summary = yaml.safe_load((folder / "summary.yaml").read_text())
        assert summary_cell(page, "test top-1") == f"{summary['eval']['test_top1'] * 100:.2f}%", name
        assert summary_cell(page, "algorithm") == algo
        assert summary_cell(page, "parameters") == f"{summary['eval']['params']:,}"
        assert summary_cell(page, "latency").split()[1] == "ms", name  # measured from eval/model.pt
        body = page.locator("body").inner_text()
        # each algorithm's own view is there
        if algo in ("darts", "pcdarts", "gdas", "betadarts"):
            assert "Architecture weights" in body and "parameter-free ops" in body, name
        if algo == "enas":
            assert "ENAS controller" in body, name
        if algo in ("random", "rea", "naswot", "morphism"):
            assert "Trials" in body and "best so far" in body, name
        if extra.get("nas.search.objectives"):  # a multi-objective search: its front, scatter and hypervolume
            assert "Pareto front" in body and "hypervolume against trials" in body, name
            assert page.locator("#pareto-front tr.selected").count() == 1, name
            assert n_images >= 4, name  # the architecture, the curves, the trials, the front, the hypervolume
        if algo == "naswot":  # it was given a table: the score-accuracy scatter and the found cell's accuracy
            assert "score vs benchmark accuracy (6 architectures" in body, name
            found = summary["search"]["benchmark_top1"]
            assert summary_cell(page, "benchmark accuracy of the found architecture").startswith(f"{found * 100:.2f}%")
        if space == "user_model":
            assert page.locator("text=conv1").count() >= 1, name  # the choices table
        else:
            assert n_images >= 2, name  # the architecture and the learning curves at least
        page.close()


def test_the_comparison_page_of_two_runs_lists_both(browser, tmp_path):
    a = toy_run("cmp_random", "random", "darts", {}, tmp_path / "logdir")
    b = toy_run("cmp_rea", "rea", "nasbench201", {}, tmp_path / "logdir")
    out = tmp_path / "comparison.html"
    proc = subprocess.run(
        [sys.executable, str(MAIN), "report", str(a), str(b), "--out", str(out), "--no-latency"],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str(out)
    page, errors = open_page(browser, out, tmp_path / "comparison.png")
    assert not errors, errors
    assert check_images(page) == 1  # the best-so-far curves, both runs on one axis
    header = page.locator("#summary tr").first.inner_text()
    assert f"{a.parent.name}/{a.name}" in header and f"{b.parent.name}/{b.name}" in header
    for folder in (a, b):
        accuracy = yaml.safe_load((folder / "summary.yaml").read_text())["eval"]["test_top1"]
        assert f"{accuracy * 100:.2f}%" in page.locator("#summary").inner_text()
    # each run's own report is linked and exists
    links = page.evaluate("Array.from(document.querySelectorAll('#summary a')).map(a => a.href)")
    assert len(links) == 2 and all(Path(link.removeprefix("file://")).is_file() for link in links), links


def test_a_failing_report_is_a_warning_and_the_run_still_succeeds(tmp_path, monkeypatch):
    import archsearch.report.html as report_html

    def broken(*args, **kwargs):
        raise RuntimeError("drawing exploded")

    monkeypatch.setattr(report_html, "write_report", broken)
    folder = toy_run("broken", "rea", "nasbench201", {}, tmp_path)
    assert (folder / "summary.yaml").is_file() and not (folder / "report.html").exists()
    log = (folder / "log.log").read_text()
    assert "WARNING: the HTML report could not be written: RuntimeError: drawing exploded" in log


def test_report_of_a_folder_that_is_no_experiment_is_one_line(tmp_path, capsys):
    from archsearch.cli import main

    for argv, fragment in (([str(tmp_path)], "holds no experiment"), ([str(tmp_path / "nope")], "is not a folder")):
        assert main(["report", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and argv[0] in err and fragment in err, err


def test_tensorboard_gets_the_heatmap_and_the_cell_per_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    folder = toy_run("tb", "darts", "darts", {"nas.search.trainer.epochs": 2, "report.auto": False}, tmp_path)
    events = EventAccumulator(str(folder / "tb"), size_guidance={IMAGES: 0})
    events.Reload()
    assert {"arch/weights", "arch/cell"} <= set(events.Tags()["images"])
    assert [e.step for e in events.Images("arch/weights")] == [1, 2]
    first = events.Images("arch/cell")[0]
    assert first.step == 1 and first.width > 100 and first.height > 50


def test_a_user_model_is_timed_only_when_its_class_is_named(tmp_path):
    """`archsearch report` on a folder from elsewhere imports no class its files name, unless told to."""
    from archsearch.report.html import write_report

    folder = toy_run("user", "darts", "user_model", {"report.auto": False}, tmp_path)
    unnamed = write_report(folder, tmp_path / "unnamed.html").read_text()
    assert 'data-key="latency">- (not measured: ' in unnamed and "examples.mnist_space:Net" in unnamed
    named = write_report(folder, tmp_path / "named.html", model="examples.mnist_space:Net").read_text()
    assert 'data-key="latency">- ' not in named and " ms (batch 1, CPU" in named
