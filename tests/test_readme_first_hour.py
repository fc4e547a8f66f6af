"""The README's "first hour" blocks run as printed: Python blocks in order in one namespace,
the shell block through bash with this environment's ``xaijax`` first on PATH."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _blocks():
    text = README.read_text()
    start = text.index("## The first hour")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```(python|bash)\n(.*?)```", text[start:end], flags=re.S)


def test_the_first_hour_runs_as_printed(tmp_path, monkeypatch, capsys):
    blocks = _blocks()
    assert [lang for lang, _ in blocks] == ["python"] * 4 + ["bash"]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for _, code in blocks[:4]:
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's code
    printed = [float(line.split()[-1]) for line in capsys.readouterr().out.splitlines()[1:]]
    kernel_error, gap, overlap, pointing, deletion = printed
    assert kernel_error < 0.05 and gap < 1e-5  # the claims the comments make
    assert 0.0 <= overlap <= 1.0 and pointing > 0.5 and 0.0 <= deletion <= 1.0
    for figure in ("waterfall.png", "beeswarm.png", "lime.png"):
        assert (tmp_path / figure).stat().st_size > 10_000
    assert namespace["exp"].values.shape == (20, 30)

    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", blocks[4][1]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "runs" / "forest"
    results = json.loads((out / "results.json").read_text())
    assert results
    assert np.load(out / "explanation.npz")["values"].shape[:2] == (10, 30)
    assert any(p.suffix == ".png" for p in out.iterdir())
