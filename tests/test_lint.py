"""The code base is ruff-clean (lint and format)."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PATHS = ["probcausal", "tests", "examples", "benchmarks"]


def ruff(*args):
    exe = shutil.which("ruff", path=str(pathlib.Path(sys.executable).parent)) or shutil.which(
        "ruff"
    )
    if exe is None:
        pytest.fail("ruff is not installed: `pip install -e .[dev]`")
    return subprocess.run([exe, *args, *PATHS], cwd=ROOT, capture_output=True, text=True)


def test_ruff_check():
    done = ruff("check")
    assert done.returncode == 0, done.stdout


def test_ruff_format():
    done = ruff("format", "--check")
    assert done.returncode == 0, done.stdout
