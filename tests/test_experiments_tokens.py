"""The token attribution experiment (experiments/token_attribution.py) end to end, quick size."""

import json

import numpy as np
from experiment_scripts import load_experiment


def test_token_attribution_quick(tmp_path):
    module = load_experiment("token_attribution")
    argv = ["--quick", "--tasks", "negation", "--seed", "0", "--out", str(tmp_path)]
    assert module.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    for figure in ("aopc.png", "tokens.png", "vit_vs_cnn.png"):
        assert (tmp_path / figure).stat().st_size > 0
    assert results["experiment"] == "token_attribution" and results["size"] == "quick"
    assert set(results["versions"]) >= {"jax", "flax", "numpy", "xaijax"}
    skipped = results["skipped"]
    K = results["settings"]["K"]
    assert list(results["text"]) == ["negation"]
    for task in ["negation"]:
        table = results["text"][task]["aopc"]
        # every method scored, or skipped with a reason (an explainer not in this checkout)
        done = set(table) | {k.split("/")[2] for k in skipped if k.startswith(f"text/{task}/")}
        assert done == set(module.TEXT_METHODS)
        assert {"exact_shapley", "kernel_shap", "partition_shap", "lime_text"} <= set(table)
        for entry in table.values():
            curve = np.asarray(entry["curve"])
            assert curve.shape == (K + 1,) and curve[0] == 0.0  # k = 0 removes nothing
            assert -1.0 <= entry["aopc"] <= 1.0
    images = results["images"]["scores"]
    done = set(images) | {k.split("/", 1)[1] for k in skipped if k.startswith("images/")}
    assert done == set(module.IMAGE_METHODS)
    for entry in images.values():
        assert 0.0 <= entry["pointing_game"] <= 1.0 and 0.0 <= entry["energy_in_mask"] <= 1.0


def test_aopc_removes_the_best_words_first():
    module = load_experiment("token_attribution")
    from xaijax.zoo import Tokenizer

    tok = Tokenizer.train(["a b c"])
    enc = tok.encode(["a b c"])

    weight = np.array([0.1, 0.6, 0.3])  # what each of a, b, c adds to P(class 1)

    def proba(X):
        kept = (np.asarray(X)[:, 1:] != tok.mask_id) @ weight
        return np.stack([1 - kept, kept], axis=1)

    # scores rank b, then c, then a: removing b drops 0.6, then c 0.3 more
    drops = module.aopc(proba, enc, np.array([[0.2, 0.9, 0.5]]), np.array([1]), 2, tok.mask_id)
    np.testing.assert_allclose(drops, [[0.0, 0.6, 0.9]], atol=1e-12)
