"""ProtoPNet run folders: one-file checkpoints flushed before their rename, settings checked."""

import json
import os

import numpy as np
import pytest

from xaijax import cli
from xaijax.cli import protopnet as protopnet_command
from xaijax.cli.settings import CliError, ProtoPNetSettings
from xaijax.zoo import training


def test_a_checkpoint_is_one_file_flushed_before_it_is_renamed(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(training.os, "fsync", fsync)
    monkeypatch.setattr(training.os, "replace", replace)
    stem = tmp_path / "checkpoint"
    training.save_checkpoint(stem, {"w": np.arange(3.0)}, {"epoch": 2})
    tmp = str(stem) + ".tmp.npz"
    assert events.index(("fsync", tmp)) < events.index(("replace", tmp))
    # The metadata read back is the one inside the .npz: a damaged .json copy does not matter.
    (tmp_path / "checkpoint.json").write_text('{"epo')
    tree, meta = training.load_checkpoint(stem, {"w": np.zeros(3)})
    assert meta["epoch"] == 2 and tree["w"].tolist() == [0.0, 1.0, 2.0]
    data = (tmp_path / "checkpoint.npz").read_bytes()
    (tmp_path / "checkpoint.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="checkpoint .*unreadable"):
        training.load_checkpoint(stem, {"w": np.zeros(3)})


def test_resuming_with_other_data_settings_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "run"
    lines = []
    first = ProtoPNetSettings(out=str(out), seed=0, n=60)
    protopnet_command._check_run(out, first, lines.append)  # a fresh run records its settings
    assert json.loads((out / "run.json").read_text()) == {
        "dataset": "shapes",
        "size": 32,
        "n": 60,
        "seed": 0,
    }
    (out / "checkpoint.npz").write_bytes(b"stands for a checkpoint")
    protopnet_command._check_run(out, ProtoPNetSettings(out=str(out), n=60, resume=True), print)
    argv = ["protopnet", "--out", str(out), "--n", "60", "--resume", "--quiet"]
    assert cli.main([*argv, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert "--seed was 0, now 1" in err and "without --resume" in err
    with pytest.raises(CliError, match="--dataset was 'shapes', now 'digits'; --n was 60, now 90"):
        protopnet_command._check_run(
            out, ProtoPNetSettings(out=str(out), n=90, dataset="digits", resume=True), print
        )
    (out / "run.json").unlink()
    with pytest.raises(CliError, match="no readable run.json"):
        protopnet_command._check_run(out, ProtoPNetSettings(out=str(out), resume=True), print)
    # A fresh run drops the old checkpoint first, so it never sits beside other settings.
    protopnet_command._check_run(out, ProtoPNetSettings(out=str(out), seed=5), print)
    assert not (out / "checkpoint.npz").exists()
    assert json.loads((out / "run.json").read_text())["seed"] == 5
