"""The interactions experiment runs end to end at a tiny size and reports sane numbers."""

import json

from experiment_scripts import load_experiment


def test_interactions_tiny(tmp_path):
    experiment = load_experiment("interactions")
    argv = ["--features", "4", "--pairs", "2", "--triples", "0", "--instances", "2"]
    argv += ["--methods", "svarm:SII", "--budgets", "16", "--out", str(tmp_path)]
    assert experiment.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    # Without triples every order-2 index is the planted pair's closed form.
    assert results["exact"]["SII"]["error_vs_pairs_only"] < 1e-5
    assert results["exact"]["SII"]["recovery"] == 1.0
    # At the full budget (2^4 coalitions) the sampler is exact.
    assert results["svarm/SII"]["16"]["error"] < 1e-5
    assert (tmp_path / "interactions.png").stat().st_size > 5000
