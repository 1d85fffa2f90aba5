"""Every ``python`` block of README.md runs as written (each in a fresh interpreter, in an empty
directory), so the tour a newcomer copies is never stale.

A block that needs a local service says so in an HTML comment on the line before it:
``<!-- needs: mosquitto -->`` (a broker on 127.0.0.1:1883). Such a block is skipped with that
reason when the service is absent, except under CI, where absence fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(?:<!-- needs: (?P<needs>[\w-]+) -->\n)?```python\n(?P<code>.*?)\n```", re.S)
SERVICES = {"mosquitto": ("127.0.0.1", 1883), "postgresql": ("127.0.0.1", 5432)}


def _blocks() -> list[tuple[int, str | None, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start("code")) + 1, m.group("needs"), m.group("code"))
            for m in BLOCK.finditer(text)]


def test_the_readme_has_python_blocks_to_run() -> None:
    assert len(_blocks()) >= 8


@pytest.mark.parametrize("line, needs, code",
                         [pytest.param(*block, id=f"line{block[0]}") for block in _blocks()])
def test_a_readme_python_block_runs_as_written(line: int, needs: str | None, code: str,
                                               tmp_path: Path) -> None:
    if needs is not None:
        if needs not in SERVICES:
            pytest.fail(f"README line {line}: unknown service {needs!r} in <!-- needs: -->")
        require_service(*SERVICES[needs], what=needs)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (f"README.md line {line} failed:\n{proc.stderr[-3000:]}")
