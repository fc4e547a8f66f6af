"""``import xaijax`` changes nothing: not JAX's configuration, not matplotlib's backend.

Each check runs in a fresh interpreter (the test process has long imported everything), with
``MPLBACKEND`` set the way a notebook or GUI user sets it and JAX options set away from their
defaults, and reports what changed as JSON.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Records which xaijax module first imports matplotlib (a meta-path finder that looks at the
# stack and finds nothing), so a failure names the culprit.
WATCH = """
import sys, traceback
FIRST_IMPORTER = []
class _Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "matplotlib" and not FIRST_IMPORTER:
            frames = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()
                      if "/xaijax/" in f.filename.replace("\\\\", "/")]
            FIRST_IMPORTER.append(frames[-1] if frames else "outside xaijax")
        return None
sys.meta_path.insert(0, _Watch())
"""

IMPORT_ONLY = (
    WATCH
    + """
import json
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "bfloat16")
jax.config.update("jax_numpy_rank_promotion", "warn")
before = {k: repr(v) for k, v in jax.config.values.items()}
import xaijax, xaijax.metrics, xaijax.plots
after = {k: repr(v) for k, v in jax.config.values.items()}
changed = {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
           if before.get(k) != after.get(k)}
report = {"changed": changed, "matplotlib_imported": "matplotlib" in sys.modules,
          "first_importer": FIRST_IMPORTER[0] if FIRST_IMPORTER else None,
          "flax_imported": "flax" in sys.modules}
# ProtoPNet and the transformer tools load on first use, and the registry lists them anyway.
names = xaijax.explainers()
report["deferred_listed"] = [n for n in ("explain_prototypes", "attention_rollout") if n in names]
report["lazy_names"] = [xaijax.ProtoPNet.__name__, xaijax.attention_rollout.__name__,
                        xaijax.transformers.__name__]
# Drawing a figure uses the backend the user chose, not one xaijax picked.
import numpy as np
fig = xaijax.plots.bar(xaijax.Explanation(np.ones((2, 3)), np.zeros(2), np.ones((2, 3))))
import matplotlib
report["backend_after_plot"] = matplotlib.get_backend()
report["figure_canvas"] = type(fig.canvas).__module__
print(json.dumps(report))
"""
)

EXPLICIT_BACKEND = """
import json
import matplotlib
matplotlib.use("pdf")
import xaijax, xaijax.plots
import numpy as np
xaijax.plots.bar(xaijax.Explanation(np.ones((2, 3)), np.zeros(2), np.ones((2, 3))))
print(json.dumps({"backend": matplotlib.get_backend()}))
"""


def run(code: str) -> dict:
    env = dict(os.environ, MPLBACKEND="svg", PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def import_only():
    return run(IMPORT_ONLY)


def test_import_leaves_jax_config_as_it_was(import_only):
    assert import_only["changed"] == {}, f"import xaijax changed JAX options: {import_only}"


def test_import_does_not_import_matplotlib(import_only):
    # Fails today only because xaijax/protopnet/visualize.py imports matplotlib (and sets the
    # Agg backend) at import; the protopnet helper's branch makes that import lazy.
    assert not import_only["matplotlib_imported"], (
        f"import xaijax imported matplotlib, first from {import_only['first_importer']}"
    )


def test_import_does_not_import_flax_until_used(import_only):
    # Flax's import costs about half a second that a command explaining a scikit-learn model
    # need not pay; ProtoPNet and the transformer tools are imported on first use.
    assert not import_only["flax_imported"]
    assert import_only["deferred_listed"] == ["explain_prototypes", "attention_rollout"]
    assert import_only["lazy_names"] == ["ProtoPNet", "attention_rollout", "xaijax.transformers"]


def test_figures_use_the_users_backend(import_only):
    # Fails today only because xaijax/protopnet/visualize.py calls matplotlib.use("Agg") at
    # import (see the test above); xaijax.plots never sets a backend.
    assert import_only["backend_after_plot"] == "svg", (
        f"MPLBACKEND=svg but figures use {import_only['backend_after_plot']}; matplotlib first "
        f"imported from {import_only['first_importer']}"
    )


def test_a_backend_chosen_before_import_is_kept():
    # Fails today only because xaijax/protopnet/visualize.py calls matplotlib.use("Agg") at
    # import, over the user's matplotlib.use("pdf").
    assert run(EXPLICIT_BACKEND)["backend"] == "pdf"
