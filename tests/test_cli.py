"""Command line: help, layers, demo, train (integration tier: smoke tests)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from netphys import cli
from netphys.models.loading import default_model_dir

SHIPPED = default_model_dir() / "manifest.json"


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("demo", "layers", "train", "run"):
        assert cmd in out


def test_no_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([])
    assert exc.value.code == 2


def test_layers(capsys):
    assert cli.main(["layers", "vgg16"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["alias", "module", "kind", "type", "activation", "post_site", "calls", "depth"]
    assert lines[1].split()[:4] == ["conv1_1", "features.0", "conv", "Conv2d"]
    assert any(line.split()[:2] == ["conv5_3", "features.28"] for line in lines)
    assert any(line.split()[:2] == ["fc8", "classifier.6"] for line in lines)


def test_layers_unknown_model(capsys):
    assert cli.main(["layers", "vgg17"]) == 2
    err = capsys.readouterr().err
    assert "netphys: error: the 'name' parameter of load_model must be one of" in err
    assert "got 'vgg17'" in err


def test_layers_subprocess():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    res = subprocess.run([sys.executable, "-m", "netphys.cli", "layers", "netphys_vgg16"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert "conv1_1" in res.stdout and "features.0" in res.stdout and "fc8" in res.stdout


def _check_demo_output(out):
    assert (out / "report.html").is_file()
    html = (out / "report.html").read_text()
    assert "<html" in html.lower() and "<img" in html.lower()
    pngs, svgs = list(out.glob("*.png")), list(out.glob("*.svg"))
    assert pngs and svgs, "the report's figures are saved as PNG and SVG"
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert all(b"<svg" in p.read_bytes()[:2000] for p in svgs)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["model"] == "netphys_vgg16" and prov["netphys_version"]


@pytest.mark.skipif(not SHIPPED.is_file(), reason=f"the shipped default model ({SHIPPED}) has not been "
                    "trained yet; the demo code path is covered by test_demo_quick_with_a_random_model")
def test_demo_quick(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    _check_demo_output(out)
    assert "report:" in capsys.readouterr().out


@pytest.fixture
def stand_in_default_model(tmp_path, monkeypatch):
    """A random netphys_vgg16 written where load_model looks for the shipped default model."""
    import hashlib

    import torch

    from netphys.models import loading
    from netphys.models.architectures import DEFAULT_ARCH, netphys_vgg16

    folder = tmp_path / "default_model"
    folder.mkdir()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(99)
        model = netphys_vgg16(**DEFAULT_ARCH)
    torch.save(model.state_dict(), folder / "weights.pt")
    manifest = {"name": "netphys_vgg16", "weights_file": "weights.pt",
                "architecture": {"builder": "netphys.models.architectures.netphys_vgg16", **DEFAULT_ARCH},
                "input": {"size": 64}, "val_top1": 0.1,
                "sha256": hashlib.sha256((folder / "weights.pt").read_bytes()).hexdigest()}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(loading, "default_model_dir", lambda: folder)
    return folder


def test_demo_quick_with_a_random_model(tmp_path, stand_in_default_model, monkeypatch, capsys):
    """The demo code path with the shipped model replaced by a random one (runs before it exists).

    ``--quick`` itself takes minutes on two cores; the test keeps its configs on four layers.
    """
    from dataclasses import replace

    import netphys.experiments.demo as demo

    quick = demo.demo_configs
    layers = ("conv1_1", "conv1_2", "conv2_1", "conv2_2")  # small receptive fields: cheap patch features
    def smaller(*args, **kwargs):
        cfgs = {name: replace(cfg, layers=layers) for name, cfg in quick(*args, **kwargs).items()}
        cfgs["fig3"] = replace(cfgs["fig3"], realisations=1)
        return cfgs

    monkeypatch.setattr(demo, "demo_configs", smaller)
    out = tmp_path / "demo"
    assert cli.main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    _check_demo_output(out)
    assert str(out / "report.html") in capsys.readouterr().out


def test_train_cli(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for k, cls in enumerate(["a", "b"]):
        (tmp_path / "tr" / cls).mkdir(parents=True)
        for i in range(4):
            a = np.clip(60 + 120 * k + rng.normal(0, 10, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(tmp_path / "tr" / cls / f"{i}.png")
    out = tmp_path / "model"
    assert cli.main(["train", str(tmp_path / "tr"), "--out", str(out), "--epochs", "1", "--batch-size", "4",
                     "--width", "0.0625", "--size", "32", "--no-progress"]) == 0
    assert (out / "weights.pt").is_file() and (out / "manifest.json").is_file()
    assert "written to" in capsys.readouterr().out
    # a bad argument is a clean error, not a traceback
    assert cli.main(["train", str(tmp_path / "tr"), "--out", str(out), "--batch-size", "100",
                     "--width", "0.0625", "--size", "32", "--no-progress"]) == 2
    assert "the 'batch_size' parameter of train" in capsys.readouterr().err


def test_cli_conventions(capsys):
    import yaml

    from netphys import __version__
    from netphys.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out
    assert main(["run", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "prune_distill.fig3" in listing and "orientation.fast" in listing
    assert main(["run", "prune_distill.fig3", "--print-config", "--set", "bins=4", "--set",
                 "layers=[conv1_1, fc6]"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["bins"] == 4 and cfg["layers"] == ["conv1_1", "fc6"] and cfg["units"] == 250
    assert main(["run", "prune_distill.fig3", "--print-config", "--set", "bins=1"]) == 2
    assert "'bins' parameter of Fig3Config must be an int >= 2, got 1" in capsys.readouterr().err
    assert main(["run", "prune_distill.fig3", "--set", "bins"]) == 2
    assert "'set' parameter of netphys run --set must be key=value" in capsys.readouterr().err
    assert main(["run"]) == 2
