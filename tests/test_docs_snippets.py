"""Every ```python block of README.md and docs/**/*.md runs as written.

Each page's blocks run top to bottom as one script, in a fresh interpreter whose working
directory is an empty temporary folder, so a snippet may use only what the page itself defines
or writes. The selected pages run two at a time (most of a page's cost is importing torch, so
the two cores are kept busy), each test waiting for its own page. A block that must not run
here (one that needs torchrun, a GPU or files that are not on this machine) is marked by an
HTML comment ``<!-- skip -->`` on the line before it; the test also checks that the marks stay
few. The gallery's scripts (examples/plot_*.py) run the same way. Also: README stays a landing
page (at most 250 lines), and its Layout section names every module of the package.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import HANG_S

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
PAGES = [p for p in PAGES if "_build" not in p.parts]
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SKIP_MARK = "<!-- skip -->"
MAX_SKIPPED = 8  # skipped blocks over every page: keep them the exception
TIMEOUT_S = HANG_S


def python_blocks(text: str) -> tuple[list[str], int]:
    """The page's runnable ```python blocks in order, and how many are marked skip."""
    run: list[str] = []
    skipped = 0
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        if before and before[-1].strip() == SKIP_MARK:
            skipped += 1
        else:
            run.append(match.group(1))
    return run, skipped


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


RUNNABLE = [p for p in PAGES if python_blocks(p.read_text())[0]]
GALLERY = sorted((ROOT / "examples").glob("plot_*.py"))  # the site's gallery, run by make docs too


def test_blocks_are_found() -> None:
    blocks, skipped = python_blocks("x\n```python\na = 1\n```\n<!-- skip -->\n```python\nb\n```\n")
    assert blocks == ["a = 1\n"] and skipped == 1
    assert RUNNABLE, "no page with a python block was found"


def test_few_blocks_are_skipped() -> None:
    skipped = {_page_id(p): python_blocks(p.read_text())[1] for p in PAGES}
    total = sum(skipped.values())
    assert total <= MAX_SKIPPED, f"{total} blocks marked {SKIP_MARK}: {skipped}"


def _run_page(page: Path, folder: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Run a page's blocks as one script, or a gallery script where it lies, in ``folder``."""
    if page.suffix == ".py":
        script = page
    else:
        blocks, _ = python_blocks(page.read_text())
        text = "\n\n".join(f"# --- block {i + 1}\n{block}" for i, block in enumerate(blocks))
        script = folder / "snippets.py"
        script.write_text(text)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    try:
        run = subprocess.run(
            [sys.executable, str(script)],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as error:
        stderr = error.stderr.decode() if isinstance(error.stderr, bytes) else error.stderr or ""
        run = subprocess.CompletedProcess(
            error.cmd, -1, "", f"timed out after {TIMEOUT_S} s\n{stderr}"
        )
    return script, run


@pytest.fixture(scope="module")
def page_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[Path, Future[tuple[Path, Any]]]:
    """Every selected page started, two at a time; the futures, by page."""
    selected = [
        item.callspec.params["page"]
        for item in request.session.items
        if getattr(item, "originalname", None) in ("test_page_snippets_run", "test_gallery_runs")
    ]
    pool = ThreadPoolExecutor(max_workers=2)
    request.addfinalizer(lambda: pool.shutdown(cancel_futures=True))
    return {
        page: pool.submit(_run_page, page, tmp_path_factory.mktemp("snippets")) for page in selected
    }


@pytest.mark.parametrize("page", RUNNABLE, ids=_page_id)
def test_page_snippets_run(page: Path, page_runs: dict[Path, Future[tuple[Path, Any]]]) -> None:
    script, run = page_runs[page].result()
    assert run.returncode == 0, (
        f"{_page_id(page)}: its python blocks failed as one script "
        f"(written to {script}):\n{run.stderr[-4000:]}"
    )


@pytest.mark.parametrize("page", GALLERY, ids=_page_id)
def test_gallery_runs(page: Path, page_runs: dict[Path, Future[tuple[Path, Any]]]) -> None:
    _, run = page_runs[page].result()
    assert run.returncode == 0, f"{_page_id(page)} failed:\n{run.stderr[-4000:]}"


def _layout_section() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## Layout\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Layout' section"
    return match.group(1)


def test_readme_is_a_landing_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the details go in docs/"


def test_readme_layout_names_every_module() -> None:
    layout = _layout_section()
    package = ROOT / "torch_balance"
    missing = []
    for path in sorted(package.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        if not re.search(rf"(?<![\w.]){re.escape(path.name)}", layout):
            missing.append(str(path.relative_to(ROOT)))
    for sub in sorted(p for p in package.iterdir() if (p / "__init__.py").exists()):
        if f"{sub.name}/" not in layout:
            missing.append(f"torch_balance/{sub.name}/")
    assert not missing, f"README's Layout section does not name: {missing}"
