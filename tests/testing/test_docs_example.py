"""The FastAPI example in docs/testing.md runs, as a user's own test module, and passes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).parents[2] / "docs" / "testing.md"


def _example() -> str:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"<!-- example: fastapi-test -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match, "docs/testing.md lost its marked FastAPI example"
    return match.group(1)


def test_docs_fastapi_example_passes(tmp_path: Path) -> None:
    """The documented example passes under pytest, with the plugin found by entry point."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    (tmp_path / "test_user_app.py").write_text(_example(), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user_app.py"],
        check=False,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
