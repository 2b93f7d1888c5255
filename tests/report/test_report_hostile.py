"""`archsearch report` on hostile run folders (issue 19): whatever a folder holds, the report either writes
its page or stops with one UserError line naming the file or value; it reads only files inside the folder;
every link it writes stays inside the page's folder and can never be read as a URL scheme.

One real toy run per module (a DARTS search: arch weights, collapse events, a final ModelDesc, eval/model.pt)
and one trial run (random search: trials.yaml), copied per test and then spoiled."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archsearch.common.errors import UserError
from archsearch.report.html import write_comparison, write_report
from tests.conftest import MAIN, REPO, assert_user_error
from tests.report.conftest import mutate
from tests.report.toy_runs import toy_run

FAST = {"report.auto": False, "nas.eval.trainer.epochs": 1}


@pytest.fixture(scope="module")
def toys(tmp_path_factory) -> dict[str, Path]:
    logdir = tmp_path_factory.mktemp("hostile_toys")
    return {
        "darts": toy_run("h_darts", "darts", "darts", {**FAST, "nas.search.trainer.epochs": 2}, logdir),
        "random": toy_run("h_random", "random", "darts", FAST, logdir),
    }


def copy_run(toys: dict[str, Path], dest: Path, kind: str = "darts") -> Path:
    shutil.copytree(toys[kind], dest, ignore=shutil.ignore_patterns("tb", "*.pt", "*.sha256"))
    return dest


def report(folder: Path) -> Path:
    return write_report(folder, latency=False)


def expect_user_error(folder: Path, *fragments: str) -> str:
    with pytest.raises(UserError) as caught:
        report(folder)
    message = str(caught.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# ---- 1. every URL a page writes is a relative link inside its folder -----------------------------------


class Urls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        assert not any(name.startswith("on") for name, _ in attrs), attrs  # no event handler from a name
        for name, value in attrs:
            if name in ("href", "src", "action", "formaction", "srcset", "poster", "data"):
                self.urls.append((tag, name, value or ""))


def assert_urls_stay_inside(page: Path) -> list[str]:
    """Every href/src of `page`: an inline PNG, the empty favicon, or a relative, scheme-less link to a file
    inside the page's folder. Returns the links."""
    parser = Urls()
    parser.feed(page.read_text(encoding="utf-8"))
    assert "script" not in parser.tags and "iframe" not in parser.tags, page
    links = []
    for tag, name, url in parser.urls:
        if tag == "img" and name == "src":
            assert url.startswith("data:image/png;base64,"), url[:80]
            continue
        if tag == "link" and url == "data:,":
            continue
        assert tag == "a" and name == "href", (tag, name, url)
        parsed = urllib.parse.urlsplit(url)
        assert not parsed.scheme and not parsed.netloc and ":" not in url.split("/")[0], url
        assert not url.startswith(("/", "\\")) and not url.startswith("//"), url
        target = (page.parent / urllib.parse.unquote(url)).resolve()
        assert target.is_relative_to(page.parent.resolve()) and target.is_file(), (url, target)
        links.append(url)
    return links


HOSTILE_NAMES = [
    "javascript:alert(document.cookie)",
    "data:text,html;<script>alert(1)<",
    "JaVaScRiPt:alert(1)",
    '"><script>alert(1)<',
    "'onmouseover=alert(1) x='",
    "a?b#c d%41",
]


def test_comparison_links_are_quoted_relative_and_inside(toys, tmp_path):
    cmp = tmp_path / "cmp"
    cmp.mkdir()
    for i, name in enumerate(HOSTILE_NAMES):
        copy_run(toys, cmp / name, "random" if i % 2 else "darts")
    # `//evil` and `../` cannot be folder names; as --out they must not make a link leave the folder
    out = write_comparison(sorted(cmp.iterdir()), latency=False)
    assert out == cmp / "comparison.html"
    links = assert_urls_stay_inside(out)
    assert len(links) == len(HOSTILE_NAMES)
    for folder in cmp.iterdir():
        if folder.is_dir():
            assert_urls_stay_inside(folder / "report.html")


def test_a_comparison_written_elsewhere_names_the_runs_without_links(toys, tmp_path):
    a, b = copy_run(toys, tmp_path / "runs" / "a"), copy_run(toys, tmp_path / "runs" / "b", "random")
    out = write_comparison([a, b], tmp_path / "elsewhere" / "sub" / "cmp.html", latency=False)
    assert assert_urls_stay_inside(out) == []  # ../../runs/a/report.html would leave the page's folder
    assert "a/report.html" in out.read_text()  # named, as text


def test_a_run_page_escapes_every_value_from_the_folder(toys, tmp_path):
    folder = copy_run(toys, tmp_path / "x")
    summary = yaml.safe_load((folder / "summary.yaml").read_text())
    summary["algo"] = "<script>alert(1)</script>"
    summary["dataset"] = '"><img src=x onerror=alert(1)>'
    (folder / "summary.yaml").write_text(yaml.safe_dump(summary))
    page = report(folder)
    assert "<script>alert" not in page.read_text() and "&lt;script&gt;alert(1)" in page.read_text()
    assert_urls_stay_inside(page)


# ---- 2. a broken folder is one line naming the file or value ------------------------------------------


def spoil(folder: Path, rel: str, content: str | bytes) -> None:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def edit_yaml(folder: Path, rel: str, change) -> None:
    data = yaml.safe_load((folder / rel).read_text())
    change(data)
    (folder / rel).write_text(yaml.safe_dump(data))


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9)
)


BROKEN = {
    "not_utf8": (lambda f: spoil(f, "summary.yaml", b"algo: \xff\xfe\n"), ("summary.yaml", "UTF-8")),
    "invalid_yaml": (lambda f: spoil(f, "config.yaml", "a: [1, 2\n"), ("config.yaml", "not valid YAML")),
    "summary_list": (lambda f: spoil(f, "summary.yaml", "- 1\n- 2\n"), ("summary.yaml", "a mapping")),
    "summary_string": (lambda f: spoil(f, "summary.yaml", "just text\n"), ("summary.yaml", "a mapping")),
    "log_mapping": (lambda f: spoil(f, "log.yaml", "event: start\n"), ("log.yaml", "a list")),
    "params_html": (
        lambda f: edit_yaml(f, "summary.yaml", lambda d: d["eval"].update(params="<b>x</b>")),
        ("summary.yaml", "eval.params"),
    ),
    "val_top1_high": (
        lambda f: edit_yaml(f, "summary.yaml", lambda d: d["search"].update(val_top1="high")),
        ("summary.yaml", "search.val_top1"),
    ),
    "bool_metric": (
        lambda f: edit_yaml(f, "summary.yaml", lambda d: d["eval"].update(test_top1=True)),
        ("summary.yaml", "eval.test_top1"),
    ),
    "eval_list": (
        lambda f: edit_yaml(f, "summary.yaml", lambda d: d.update(eval=[1, 2])),
        ("summary.yaml", "eval must be a mapping"),
    ),
    "softmax_strings": (
        lambda f: edit_yaml(
            f,
            "log.yaml",
            lambda d: next(e for e in d if e["event"] == "arch_weights")["softmax"]["regular"][0].__setitem__(0, "hi"),
        ),
        ("log.yaml", "softmax.regular[0][0]"),
    ),
    "softmax_ragged": (
        lambda f: edit_yaml(
            f, "log.yaml", lambda d: next(e for e in d if e["event"] == "arch_weights")["softmax"]["regular"][1].pop()
        ),
        ("log.yaml", "softmax.regular[1]"),
    ),
    "epoch_string": (
        lambda f: edit_yaml(
            f, "log.yaml", lambda d: next(e for e in d if e["event"] == "search_epoch").update(epoch="one")
        ),
        ("log.yaml", ".epoch"),
    ),
    "final_arch_outside": (
        lambda f: edit_yaml(f, "summary.yaml", lambda d: d.update(final_arch="../../../../../../../../etc/hostname")),
        ("summary.yaml", "final_arch", "leaves the run folder"),
    ),
    "final_arch_absolute": (
        lambda f: edit_yaml(f, "summary.yaml", lambda d: d.update(final_arch="/etc/hostname")),
        ("final_arch", "leaves the run folder"),
    ),
    "final_arch_symlink_out": (
        lambda f: (
            (f / "search" / "final_model_desc.yaml").unlink()
            or (f / "search" / "final_model_desc.yaml").symlink_to("/etc/hostname")
        ),
        ("final_arch", "leaves the run folder"),
    ),
    "summary_symlink_out": (
        lambda f: (f / "summary.yaml").unlink() or (f / "summary.yaml").symlink_to("/etc/hostname"),
        ("summary.yaml", "leaves the run folder"),
    ),
    "final_arch_a_list": (
        lambda f: spoil(f, "search/final_model_desc.yaml", "[1, 2]\n"),
        ("final_model_desc.yaml", "a mapping"),
    ),
    "final_arch_bad_desc": (
        lambda f: edit_yaml(f, "search/final_model_desc.yaml", lambda d: d["cells"][0].update(nodes="x")),
        ("final_model_desc.yaml", "cells[0]"),
    ),
    "final_arch_fifo": (
        lambda f: (
            (f / "search" / "final_model_desc.yaml").unlink()
            or __import__("os").mkfifo(f / "search" / "final_model_desc.yaml")
        ),
        ("final_model_desc.yaml", "not a regular file"),
    ),
    "log_alias_bomb": (lambda f: spoil(f, "log.yaml", ALIAS_BOMB), ("log.yaml", "too large")),
    "config_alias_cycle": (lambda f: spoil(f, "config.yaml", "a: &a [*a]\n"), ("config.yaml",)),
    "config_nas_list": (lambda f: spoil(f, "config.yaml", "nas: [1]\n"), ("config.yaml", "nas must be a mapping")),
    "argv_mapping": (
        lambda f: edit_yaml(f, "log.yaml", lambda d: d[0].update(argv={"a": 1})),
        ("log.yaml", "argv"),
    ),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_run_folder_is_one_line_naming_the_file(toys, tmp_path, name):
    folder = copy_run(toys, tmp_path / "run")
    before = sorted(p.name for p in tmp_path.iterdir())
    spoil_it, fragments = BROKEN[name]
    spoil_it(folder)
    expect_user_error(folder, *fragments)
    assert not (folder / "report.html").exists() and sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_bad_trial_is_one_line(toys, tmp_path):
    folder = copy_run(toys, tmp_path / "run", "random")
    edit_yaml(folder, "search/trials.yaml", lambda d: d[0]["metrics"].update(val_top1=[1]))
    expect_user_error(folder, "trials.yaml", "trial 0.metrics.val_top1")
    edit_yaml(folder, "search/trials.yaml", lambda d: d[0].update(metrics={"val_top1": 0.5}, index="0"))
    expect_user_error(folder, "trials.yaml", "trial 0.index")


MATH_NAMES = ["$\\frac{$", "$x^{", "\\", "$$", "${}_{", "_{", "$\\notacommand$", "a" * 5000]


def test_names_are_drawn_as_written_never_as_math_text(toys, tmp_path):
    """Op, table and column names from log.yaml and the final architecture are user text: `$\\frac{$` drew
    a matplotlib traceback (math text); a 5000-character name must not blow up a figure's size."""
    folder = copy_run(toys, tmp_path / "run")

    def names(log):
        for e in log:
            if e["event"] == "arch_weights":
                e["columns"]["regular"][: len(MATH_NAMES)] = MATH_NAMES
                e["softmax"]["$\\frac{$"] = e["softmax"].pop("reduction")
                e["columns"]["$\\frac{$"] = e["columns"].pop("reduction")

    edit_yaml(folder, "log.yaml", names)
    edit_yaml(folder, "summary.yaml", lambda d: d.update(algo="$\\frac{$"))
    page = report(folder)
    assert "Architecture weights" in page.read_text()
    # a genotype with such op names draws too (the drawing's own math text is only c_{k-2}, c_{k-1}, c_{k})
    from archsearch.report import drawing
    from archsearch.search.pictures import cell_picture

    dag = cell_picture("$\\frac{$", 2, [[(name, 0) for name in MATH_NAMES]], [2])
    assert drawing.png_bytes(drawing.figure_of([dag]))[:4] == b"\x89PNG"


def test_a_huge_architecture_is_not_drawn_and_the_page_says_so(toys, tmp_path):
    from archsearch.report import drawing
    from archsearch.search.pictures import cell_picture

    dag = cell_picture("big", 2, [[("sep_conv_3x3", 0)] for _ in range(drawing.MAX_NODES + 1)], [2])
    assert len(dag.nodes) > drawing.MAX_NODES  # what the report checks before drawing
    folder = copy_run(toys, tmp_path / "run")
    edit_yaml(
        folder,
        "log.yaml",
        lambda log: [e["softmax"].update(regular=[[0.5, 0.5]] * 1000) for e in log if e["event"] == "arch_weights"],
    )
    assert "too large to draw" in report(folder).read_text()


def test_non_finite_metrics_are_shown_as_not_recorded(toys, tmp_path):
    folder = copy_run(toys, tmp_path / "run")
    edit_yaml(folder, "summary.yaml", lambda d: d["eval"].update(test_top1=float("nan"), macs=float("inf")))
    edit_yaml(folder, "log.yaml", lambda log: [e.update(val_top1=float("nan")) for e in log if "val_top1" in e])
    assert 'data-key="test top-1">-<' in report(folder).read_text()


def test_a_symlinked_run_leading_out_of_a_comparison_folder_is_refused(toys, tmp_path):
    outside = copy_run(toys, tmp_path / "outside")
    cmp = tmp_path / "cmp"
    copy_run(toys, cmp / "a")
    (cmp / "b").symlink_to(outside)
    from archsearch.report.run_data import experiment_folders

    with pytest.raises(UserError, match="leading out of"):
        experiment_folders([cmp])
    assert not (outside / "report.html").exists()


def test_cli_broken_folder_is_one_line_with_status_2(toys, tmp_path):
    folder = copy_run(toys, tmp_path / "run")
    edit_yaml(folder, "summary.yaml", lambda d: d.update(final_arch="../../../../../../etc/hostname"))
    proc = subprocess.run(
        [sys.executable, str(MAIN), "report", str(folder), "--no-latency"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert_user_error(proc, "summary.yaml", "final_arch", "leaves the run folder")
    assert not (folder / "report.html").exists()


# ---- 3. fuzz: only a page or a UserError, whatever each file holds --------------------------------------

FILES = ["summary.yaml", "config.yaml", "log.yaml", "search/final_model_desc.yaml", "search/trials.yaml"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=12),
    st.sampled_from(["$\\frac{$", "<script>", "../../../etc/hostname", "/etc/hostname", "javascript:x"]),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
KEYS = ["algo", "final_arch", "model", "eval", "search", "params", "val_top1", "softmax", "epoch", "event",
        "metrics", "index", "cells", "nodes", "edges", "op", "name", "input_id", "nas", "space", "argv",
        "meta"]  # fmt: skip




CONTENT = st.one_of(
    st.binary(max_size=64).map(lambda b: ("bytes", b)),
    st.just(("text", ALIAS_BOMB)),
    st.just(("text", "a: &a [*a]\n")),
    st.tuples(st.just("top"), VALUES),
    st.tuples(st.just("mutate"), st.tuples(st.lists(st.integers(-30, 30), min_size=1, max_size=6), VALUES)),
)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(file=st.sampled_from(FILES), content=CONTENT)
def test_fuzz_report_reader_gives_a_page_or_a_user_error(toys, tmp_path_factory, file, content):
    # the DARTS run only where its files differ (its report draws the most, so it is the slower one)
    folder = copy_run(toys, tmp_path_factory.mktemp("fuzz") / "run", "darts" if file == "log.yaml" else "random")
    kind, value = content
    path = folder / file
    if kind == "bytes":
        path.write_bytes(value)
    elif kind == "text":
        path.write_text(value)
    elif kind == "top":
        path.write_text(yaml.safe_dump(value))
    else:
        steps, new = value
        path.write_text(yaml.safe_dump(mutate(yaml.safe_load(path.read_text()), steps, new, KEYS)))
    try:
        page = report(folder)
    except UserError as e:
        assert "\n" not in str(e), str(e)
        return
    assert_urls_stay_inside(page)
