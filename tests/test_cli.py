"""The command line: every tabular explainer through `xaijax explain`, settings, errors."""

import dataclasses
import json
import os
import sys

import jax
import numpy as np
import pytest

import xaijax as xj
from xaijax import cli
from xaijax.cli import experiment, parser
from xaijax.cli.methods import tabular_methods
from xaijax.cli.settings import CliError, ExplainSettings
from xaijax.core.registry import ExplainerInfo, explainers

W = np.array([1.0, -2.0, 0.5, 0.0], np.float32)
MODEL_SOURCE = """
import jax.numpy as jnp
import numpy as np

W = np.array([1.0, -2.0, 0.5, 0.0], np.float32)


def linear(X):
    return X @ jnp.asarray(W) + 0.5


def host(X):
    return np.asarray(X) @ W + 0.5
"""
EVERY = {
    "kernel_shap",
    "permutation_shap",
    "exact_shapley",
    "lime_tabular",
    "deep_shap",
    "saliency",
    "gradient_x_input",
    "smoothgrad",
    "integrated_gradients",
    "expected_gradients",
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    module = f"cli_model_{os.getpid()}"
    (root / f"{module}.py").write_text(MODEL_SOURCE)
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.savez(root / "data.npz", X=X, feature_names=np.array(["a", "b", "c", "d"]))
    sys.path.insert(0, str(root))
    yield root, module, X
    sys.path.remove(str(root))


def run(root, module, method, *extra, model="linear", out=None):
    out = out or root / method
    argv = [
        "explain",
        "--model",
        f"{module}:{model}",
        "--data",
        str(root / "data.npz"),
        "--method",
        method,
        "--chunk-size",
        "4",  # two chunks of 3 rows: keys fold_in(key, 0) and fold_in(key, 1)
        "--no-figures",
        "--out",
        str(out),
        *extra,
    ]
    return cli.main(argv), out


def test_every_tabular_explainer_is_offered():
    methods = tabular_methods()
    assert EVERY <= set(methods)
    choices = parser.build_parser(methods)._subparsers._group_actions[0].choices
    method_flag = next(a for a in choices["explain"]._actions if a.dest == "method")
    assert set(method_flag.choices) == set(methods)
    # images, text, layers and coefficients are not rows for a model f(X)
    assert not {"lime_image", "lime_text", "grad_cam", "linear_shap", "max_shap"} & set(methods)
    # an explainer registered later is offered without touching the command line
    infos = dict(explainers())
    infos["new_method"] = dataclasses.replace(infos["kernel_shap"], name="new_method", inputs="any")
    assert "new_method" in tabular_methods(infos)
    infos["image_method"] = dataclasses.replace(infos["kernel_shap"], inputs="image")
    assert "image_method" not in tabular_methods(infos)
    assert isinstance(infos["kernel_shap"], ExplainerInfo)


def test_every_method_through_the_command_line_matches_its_oracle(files):
    root, module, X = files
    centred = (X - X.mean(0)) * W  # the Shapley values of a linear model
    closed_form = {
        "kernel_shap": centred,
        "permutation_shap": centred,
        "exact_shapley": centred,
        "deep_shap": centred,
        "saliency": np.broadcast_to(np.abs(W), X.shape),
        "gradient_x_input": X * W,
        "smoothgrad": np.broadcast_to(W, X.shape),
        "integrated_gradients": X * W,
    }
    extra = {"lime_tabular": ["--num-samples", "300"], "expected_gradients": ["--num-samples", "8"]}
    k_explain = jax.random.split(jax.random.key(0))[1]

    def linear(Z):
        return Z @ jax.numpy.asarray(W) + 0.5

    for method in sorted(EVERY):
        status, out = run(root, module, method, *extra.get(method, []))
        assert status == 0, method
        exp = xj.Explanation.load(out / "explanation")
        summary = json.loads((out / "results.json").read_text())
        assert exp.values.shape == (6, 4) and summary["kind"] == exp.kind, method
        if method in closed_form:
            np.testing.assert_allclose(exp.values, closed_form[method], atol=2e-5, err_msg=method)
            continue
        # Random, no closed form: the same call made directly, chunk by chunk, with the keys
        # the command line derives.
        fn = xj.lime_tabular if method == "lime_tabular" else xj.expected_gradients
        num = 300 if method == "lime_tabular" else 8
        parts = [
            fn(
                linear,
                X[3 * i : 3 * i + 3],
                X,
                key=jax.random.fold_in(k_explain, i),
                num_samples=num,
            ).values
            for i in range(2)
        ]
        np.testing.assert_allclose(exp.values, np.concatenate(parts), rtol=1e-6, err_msg=method)
    kernel = json.loads((root / "kernel_shap" / "results.json").read_text())
    assert kernel["options"] == {"num_samples": "auto", "l1_reg": False, "link": "identity"}
    assert kernel["feature_names"] == ["a", "b", "c", "d"]


def test_options_targets_and_figures(files):
    root, module, X = files
    status, out = run(root, module, "kernel_shap", "--option", "num_samples=40", out=root / "opt")
    assert status == 0
    manifest = json.loads((out / "chunks" / "manifest.json").read_text())
    assert manifest["settings"]["num_samples"] == 40
    argv = ["explain", "--model", f"{module}:linear", "--data", str(root / "data.npz")]
    assert (
        cli.main([*argv, "--method", "saliency", "--targets", "0", "--out", str(root / "s")]) == 0
    )
    assert (root / "s" / "bar.png").stat().st_size > 1000  # a map: the bar chart only
    assert not (root / "s" / "waterfall_row0.png").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "kernel_shap", "--num-permutations", "3"], "--num-permutations does not"),
        (["--method", "saliency", "--option", "nonsense=1"], "--nonsense does not apply"),
        (["--method", "saliency", "--option", "nonsense"], "NAME=VALUE"),
        (["--method", "kernel_shap", "--chunk-size", "0"], "--chunk-size"),
        (["--method", "kernel_shap", "--background", "nope.npz"], "--background"),
        (["--method", "kernel_shap", "--num-samples", "-3"], "num_samples"),
    ],
)
def test_bad_explain_arguments_are_one_clear_line(files, capsys, extra, message):
    root, module, _ = files
    argv = ["explain", "--model", f"{module}:linear", "--data", str(root / "data.npz")]
    assert cli.main([*argv, *extra, "--out", str(root / "bad")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xaijax explain: error:") and message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("method", ["saliency", "deep_shap", "expected_gradients"])
def test_host_model_with_a_jax_only_method_is_refused(files, capsys, method):
    root, module, _ = files
    status, _ = run(root, module, method, model="host", out=root / "host")
    assert status == 2
    err = capsys.readouterr().err
    assert f"--method {method} needs a JAX model" in err and "host" in err
    # the same host model is fine for a model-agnostic method
    status, _ = run(root, module, "exact_shapley", model="host", out=root / "host_ok")
    assert status == 0


def test_settings_are_frozen_and_checked():
    s = ExplainSettings(model="m.pkl", data="d.npz", options={"num_samples": 5})
    assert s.options == (("num_samples", 5),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.method = "exact_shapley"
    with pytest.raises(CliError, match="--background-size"):
        ExplainSettings(model="m", data="d", background_size=0)
    args = parser.build_parser().parse_args(
        ["explain", "--model", "m", "--data", "d", "--num-samples", "0", "--option", "a=[1, 2]"]
    )
    settings = parser.explain_settings(args)
    assert settings.options == (("a", [1, 2]),)  # --num-samples 0: the method's default


def test_experiment_without_an_experiments_folder_says_what_to_do(tmp_path, monkeypatch, capsys):
    with pytest.raises(CliError, match="clone the repository"):
        experiment.available_experiments(cwd=str(tmp_path), source_root=str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(experiment, "_source_root", lambda: str(tmp_path))
    assert cli.main(["experiment"]) == 2
    assert cli.main(["experiment", "protopnet"]) == 2
    err = capsys.readouterr().err
    assert "not part of the installed package" in err and "from its root" in err
    # From a checkout (the source tree next to the package) the experiments are found.
    monkeypatch.undo()
    found = experiment.available_experiments(cwd=str(tmp_path))
    assert "protopnet" in found and found["protopnet"].endswith(
        os.path.join("experiments", "protopnet.py")
    )


def test_the_script_ends_without_teardown_only_when_nothing_runs(monkeypatch):
    # Skipping the interpreter's teardown saves 0.4-0.7 s of a small job; a thread still
    # working keeps the normal exit (which waits for it).
    import threading

    exits = []
    monkeypatch.setattr(os, "_exit", exits.append)
    monkeypatch.setattr(threading, "enumerate", lambda: [threading.main_thread()])
    parser.exit_without_teardown(3)
    assert exits == [3]
    monkeypatch.undo()
    monkeypatch.setattr(os, "_exit", exits.append)
    done = threading.Event()
    worker = threading.Thread(target=done.wait)
    worker.start()
    try:
        parser.exit_without_teardown(4)
    finally:
        done.set()
        worker.join()
    assert exits == [3]  # returned: the caller exits as usual
