"""Every python block of README.md and docs/*.md runs; every example runs."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# `make test-fast` runs the quickstart and the pages that take under ~7 s on 2
# cores; `make test` runs every page and example
FAST_EXAMPLES = {"quickstart.py"}
SLOW_PAGES = {
    "neural.md",
    "modular_dcm.md",
    "avici.md",
    "biols.md",
    "causal_vae.md",
    "abduction.md",
    "semantics.md",
    "queries.md",
}


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize(
    "page",
    [p if p.name not in SLOW_PAGES else pytest.param(p, marks=pytest.mark.slow) for p in PAGES],
    ids=lambda p: p.name,
)
def test_page_code_runs(page, capsys):
    namespace = {"__name__": f"doc_{page.stem}"}
    for block in python_blocks(page):
        exec(compile(block, str(page), "exec"), namespace)


def test_docs_have_code():
    assert sum(len(python_blocks(p)) for p in PAGES) >= 8


@pytest.mark.parametrize(
    "example",
    [e if e.name in FAST_EXAMPLES else pytest.param(e, marks=pytest.mark.slow) for e in EXAMPLES],
    ids=lambda p: p.name,
)
def test_example_runs(example, tmp_path):
    env = {
        **os.environ,
        "PROBCAUSAL_OUT": str(tmp_path),
        "MPLBACKEND": "Agg",
        "JAX_PLATFORMS": "cpu",
    }
    done = subprocess.run(
        [sys.executable, str(example)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip()
    if example.name == "quickstart.py":
        assert (tmp_path / "quickstart_counterfactual.png").stat().st_size > 10_000
        assert "exact answer 1.9" in done.stdout and "1.900" in done.stdout


def test_every_error_is_documented():
    import probcausal.errors

    text = (ROOT / "docs" / "errors.md").read_text()
    missing = [name for name in probcausal.errors.__all__ if f"`{name}`" not in text]
    assert not missing, f"docs/errors.md lacks {missing}"
