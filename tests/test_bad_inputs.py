"""Bad inputs that used to pass silently or die inside torch/numpy, and API hygiene (issue 9, issue 14).

Every error is a :class:`netphys.NetphysError` with the house template, pinned here.
"""
from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import netphys
from netphys._validation import NetphysError
from netphys.models import load_model
from netphys.recording import layer_shapes, record, save_recording
from netphys.stimuli import Preprocess, StimulusSet

NO_GPU = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def trained_default():
    return load_model()  # netphys_vgg16, shipped weights, 64 px


@pytest.fixture(scope="module")
def random_default():
    return load_model("netphys_vgg16", weights="random")


def _stim(size, n=2):
    return StimulusSet.from_arrays(np.zeros((n, size, size, 3), np.uint8), labels=np.arange(n) % 2)


# ----------------------------------------------------------------------------- devices
@pytest.mark.skipif(not NO_GPU, reason="checks the message on a machine without a GPU")
def test_cuda_without_gpu_is_refused(random_default):
    msg = (r"the 'device' parameter of {} must be a device available on this machine, got 'cuda'; torch sees "
           r"no CUDA GPU here \(torch.cuda.is_available\(\) is False\); use device='cpu'")
    with pytest.raises(NetphysError, match=msg.format("record")):
        record(random_default, _stim(64), ["conv1_1"], units=2, device="cuda")
    with pytest.raises(NetphysError, match=msg.format("load_model")):
        load_model("netphys_vgg16", weights="random", device="cuda")
    with pytest.raises(NetphysError, match=r"'device' parameter of record .* got 'cuda:1'"):
        record(random_default, _stim(64), ["conv1_1"], units=2, device="cuda:1")


@pytest.mark.parametrize("call, func", [
    (lambda m: record(m, _stim(64), ["conv1_1"], units=2, device="gpu0"), "record"),
    (lambda m: load_model("netphys_vgg16", weights="random", device="gpu0"), "load_model"),
    (lambda m: layer_shapes(m, ["conv1_1"], 64, device="gpu0"), "layer_shapes"),
    (lambda m: _stim(8).tensor(device="gpu0"), "StimulusSet.tensor"),
    (lambda m: next(_stim(8).batches(2, device="gpu0")), "StimulusSet.batches"),
])
def test_unknown_device_name_is_refused(random_default, call, func):
    with pytest.raises(NetphysError, match=rf"the 'device' parameter of {func} must be a torch device such "
                                           r"as 'cpu', 'cuda' or 'cuda:0' \(or a torch.device\), got 'gpu0'"):
        call(random_default)


def test_known_devices_still_work(random_default):
    rec = record(random_default, _stim(64), ["conv1_1"], units=2, device=torch.device("cpu"))
    assert rec.shape == (2, 2)
    assert _stim(8).tensor(device="cpu").device.type == "cpu"


# ----------------------------------------------------------------------------- stimulus size vs the model
@pytest.mark.parametrize("size", [224, 16])
def test_trained_model_refuses_stimuli_of_another_size(trained_default, size):
    with pytest.raises(NetphysError, match=(
            rf"the 'stimuli' parameter of record must be images at the model's input size \(64x64 px for "
            rf"'netphys_vgg16' with weights netphys-default\(imagenette-64\)\), got '{size}x{size} px images'; "
            r"build the set with preprocess=Preprocess\(resize=64, crop=64\)")):
        record(trained_default, _stim(size), ["conv1_1"], units=2)


def test_forward_failure_names_the_input_size(random_default):
    # a random network takes any size its forward accepts; 16 px is too small for five 2x2 pools
    assert record(random_default, _stim(32), ["conv1_1"], units=2).shape == (2, 2)
    with pytest.raises(NetphysError, match=(
            r"the 'stimuli' parameter of record must be images the network can process, got '16x16 px "
            r"images'; its forward pass on a zero image of shape \(1, 3, 16, 16\) failed \(RuntimeError: .*\); "
            r"the model 'netphys_vgg16' takes 64x64 px images; build the stimuli at that size with "
            r"preprocess=Preprocess\(resize=64, crop=64\)")):
        record(random_default, _stim(16), ["conv1_1"], units=2)


def test_model_of_unknown_input_size_takes_any_size():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    for size in (12, 40):
        assert record(model, _stim(size), ["conv1", "fc2"], units=2).shape == (2, 4)


# ----------------------------------------------------------------------------- StimulusSet inputs
@pytest.mark.parametrize("kw, match", [
    ({"labels": [0, 2], "class_names": ["a", "b"]},
     r"the 'labels' parameter of StimulusSet.from_arrays must be ints in \[-1, 1\] \(one of the 2 "
     r"class_names, or -1 for unlabelled\), got 2; pass class_names with a name for every label"),
    ({"labels": [0, -3]}, r"the 'labels' parameter of StimulusSet.from_arrays must be ints in \[-1, 0\].*got -3"),
    ({"labels": ["cat", "bird"], "class_names": ["cat", "dog"]},
     r"the 'labels' parameter of StimulusSet.from_arrays must be names in class_names \(\['cat', 'dog'\]\), "
     r"got 'bird'; add the class to class_names or pass integer labels"),
    ({"labels": [0.5, 1.0]}, r"the 'labels' parameter of StimulusSet.from_arrays must be ints \(class indices, "
     r"-1 for unlabelled\) or class names \(str\), got \[0.5, 1.0\]"),
    ({"preprocess": "imagenet1k"}, r"the 'preprocess' parameter of StimulusSet.from_arrays must be a netphys "
     r"Preprocess, None, or one of 'imagenet', 'caffe', got 'imagenet1k'; e.g. Preprocess\(resize=64, crop=64\)"),
    ({"preprocess": 64}, r"the 'preprocess' parameter of StimulusSet.from_arrays must be a netphys Preprocess"),
])
def test_from_arrays_bad_labels_and_preprocess(kw, match):
    with pytest.raises(NetphysError, match=match):
        StimulusSet.from_arrays(np.zeros((2, 8, 8, 3), np.uint8), **kw)


def test_string_labels_and_preprocess_names_are_accepted(tmp_path):
    st = StimulusSet.from_arrays(np.zeros((3, 8, 8, 3), np.uint8), labels=["dog", "cat", "dog"])
    assert st.class_names == ["cat", "dog"] and st.labels.tolist() == [1, 0, 1]
    st = StimulusSet.from_arrays(np.zeros((2, 8, 8, 3), np.uint8), labels=["b", "a"], class_names=["b", "a"])
    assert st.labels.tolist() == [0, 1] and st.coords["class_name"].tolist() == ["b", "a"]
    assert StimulusSet.from_arrays(np.zeros((1, 8, 8, 3), np.uint8), preprocess="imagenet").preprocess == \
        Preprocess.imagenet(8)
    assert StimulusSet.from_arrays(np.zeros((1, 8, 8, 3), np.uint8), preprocess="caffe").preprocess == \
        Preprocess.caffe(8)
    from PIL import Image

    (tmp_path / "k").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "k" / "a.png")
    assert StimulusSet.from_folder(tmp_path, preprocess="imagenet").preprocess == Preprocess.imagenet(20)
    with pytest.raises(NetphysError, match=r"the 'preprocess' parameter of StimulusSet.from_folder must be"):
        StimulusSet.from_folder(tmp_path, preprocess="vgg")
    with pytest.raises(NetphysError, match=r"the 'preprocess' parameter of StimulusSet.with_preprocess"):
        _stim(8).with_preprocess("none")


def test_subsample_more_per_class_than_there_are():
    st = StimulusSet.from_arrays(np.zeros((300, 4, 4, 3), np.uint8), labels=np.repeat(np.arange(3), 100))
    with pytest.raises(NetphysError, match=r"the 'n_per_class' parameter of StimulusSet.subsample must be <= "
                                           r"the images of the smallest class \(100\), got 500; use "
                                           r"n_per_class <= 100 or allow_fewer=True"):
        st.subsample(n_per_class=500)
    assert len(st.subsample(n_per_class=500, allow_fewer=True)) == 300
    assert np.bincount(st.subsample(n_per_class=100).labels).tolist() == [100, 100, 100]


@pytest.mark.parametrize("kw, match", [
    ({"resize": 64, "crop": 128}, r"the 'crop' parameter of Preprocess must be <= resize \(64\): the centre "
     r"crop is cut out of the resized image, got 128; use Preprocess\(resize=128, crop=128\) or a crop <= 64"),
    ({"resize": 0, "crop": 0}, r"the 'resize' parameter of Preprocess must be a positive int \(pixels\), got 0"),
    ({"resize": 64.0, "crop": 64}, r"the 'resize' parameter of Preprocess must be a positive int"),
    ({"std": (0.2, 0.0, 0.2)}, r"the 'std' parameter of Preprocess must be 3 finite numbers \(one per "
     r"channel\), all > 0, got \(0.2, 0.0, 0.2\)"),
    ({"mean": (0.5, 0.5)}, r"the 'mean' parameter of Preprocess must be 3 finite numbers"),
    ({"scale": 0}, r"the 'scale' parameter of Preprocess must be a number > 0, got 0"),
])
def test_preprocess_refuses_impossible_settings(kw, match):
    with pytest.raises(NetphysError, match=match):
        Preprocess(**kw)


# ----------------------------------------------------------------------------- storage and decoding
def test_save_recording_to_an_unwritable_place(random_default, tmp_path):
    rec = record(random_default, _stim(32), ["conv1_1"], units=2)
    blocker = tmp_path / "a_file.txt"
    blocker.write_text("not a folder")
    target = blocker / "rec.nc"
    with pytest.raises(NetphysError, match=r"the 'path' parameter of save_recording must be a file path in a "
                                           r"folder you can write to, got '.*a_file.txt/rec.nc'; writing "
                                           r"failed: (FileExistsError|NotADirectoryError): .*; choose another "
                                           r"path") as info:
        save_recording(rec, target)
    assert isinstance(info.value, OSError)  # code that catches OSError keeps working


@pytest.mark.parametrize("bad, match", [
    (np.zeros((10, 4)), r"the 'recording' parameter of decode_layers must be an xarray.DataArray \(stimulus, "
     r"unit\) from record\(\), got 'ndarray'; record the network with netphys.recording.record, or wrap"),
    (xr.DataArray(np.zeros((10, 4)), dims=("image", "unit")),
     r"the 'recording' parameter of decode_layers must be a DataArray with dims \('stimulus', 'unit'\), "
     r"got \('image', 'unit'\)"),
    (xr.DataArray(np.zeros((10, 4)), dims=("stimulus", "unit"), coords={"label": ("stimulus", np.arange(10) % 2)}),
     r"the 'recording' parameter of decode_layers must be a recording with a 'layer' unit coordinate"),
])
def test_decode_layers_refuses_non_recordings(bad, match):
    from netphys.decoding import decode_layers

    with pytest.raises(NetphysError, match=match):
        decode_layers(bad)


# ----------------------------------------------------------------------------- API hygiene
def test_public_error_types():
    from netphys import _validation

    assert netphys.NetphysError is _validation.NetphysError
    assert netphys.NetphysWarning is _validation.NetphysWarning
    from netphys.stats import TwoNN, fit_power_law, id_vs_population  # noqa: F401
    from netphys.stats.dimension import TwoNN as Same

    assert TwoNN is Same


def test_estimators_follow_the_sklearn_protocol():
    from sklearn.base import BaseEstimator, clone

    from netphys.decoding import LinearSVM
    from netphys.stats import TwoNN

    for est, params in ((TwoNN(0.2, random_state=3), {"discard_fraction": 0.2, "random_state": 3}),
                        (LinearSVM(C=0.5, tol=1e-4), {"C": 0.5, "tol": 1e-4})):
        assert isinstance(est, BaseEstimator)
        assert params.items() <= est.get_params().items()
        twin = clone(est)
        assert twin.get_params() == est.get_params() and twin is not est
        assert not [k for k in vars(twin) if k.endswith("_")]  # the constructor stores settings only
    # LinearSVM: fit returns self, learned state ends in _, score is a float (known answer: separable)
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-3, 1, (40, 2)), rng.normal(3, 1, (40, 2))])
    y = np.repeat([0, 1], 40)
    svm = LinearSVM()
    assert svm.fit(X, y) is svm and svm.coef_.shape == (1, 2, 2)
    assert isinstance(svm.score(X, y), float) and svm.score(X, y) == 1.0
    assert svm.score(X, 1 - y) == 0.0
    batched = LinearSVM().fit(np.stack([X, X[:, ::-1]]), y)
    assert batched.problem_scores(np.stack([X, X[:, ::-1]]), y).tolist() == [1.0, 1.0]
    with pytest.raises(NetphysError, match=r"the 'C' parameter of LinearSVM.fit must be a number > 0, got -1"):
        LinearSVM(C=-1).fit(X, y)


def _public_functions():
    from netphys import decoding, rf
    from netphys.models import loading
    import importlib

    record_mod = importlib.import_module("netphys.recording.record")
    from netphys.stats import dimension
    from netphys.stimuli import StimulusSet as SS

    funcs = [rf.receptive_fields, rf.gradient_receptive_fields, rf.layer_geometry, rf.rf_table,
             rf.crop_patches, rf.RFGeometry.boxes, record_mod.record, record_mod.sample_units,
             record_mod.layer_shapes, loading.load_model, loading.model_info, decoding.decode_layers,
             decoding.balanced_split, dimension.id_vs_population, dimension.fit_power_law,
             dimension.TwoNN.__init__, SS.from_folder, SS.from_zip, SS.from_arrays, SS.subsample,
             SS.tensor, SS.batches, SS.with_preprocess, Preprocess.imagenet, Preprocess.caffe]
    return {f.__qualname__: f for f in funcs}


@pytest.mark.parametrize("name, func", list(_public_functions().items()))
def test_public_signatures(name, func):
    params = inspect.signature(func).parameters
    assert "func" not in params, f"{name} takes a 'func' parameter (error-message plumbing)"
    if "random_state" in params:
        p = params["random_state"]
        assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default == 0, (name, p)
    for old in ("size", "in_size", "image_size", "model_size"):
        p = params.get(old)
        assert p is None or p.default is None, f"{name}: '{old}' must be a deprecated alias of 'input_size'"


def test_importing_plotting_keeps_the_users_backend():
    code = ("import matplotlib; matplotlib.use('svg'); import netphys.plotting, netphys.plotting.selectivity; "
            "import matplotlib.pyplot as plt; print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().lower() == "svg"


# ----------------------------------------------------------------------------- issue 14: configs and runs
# Each row: (case, experiment, config overrides, error pattern). Every one must fail in validation,
# before any model is loaded or image read (the runner validates the whole config first).
_RUN_CASES = [
    ("empty networks", "prune_distill.fig3", {"networks": []}, r"'networks' parameter of Fig3Config .*non-empty"),
    ("empty features", "prune_distill.fig3", {"features": []}, r"'features' parameter of Fig3Config .*non-empty"),
    ("unknown feature", "prune_distill.fig3", {"features": ["colour"]}, r"'features' parameter .*got 'colour'"),
    ("hybrid:abc", "prune_distill.fig3", {"networks": ["trained", "hybrid:abc"]}, r"hybrid:<l\*>.*'hybrid:abc'"),
    ("repeated network", "prune_distill.fig3", {"networks": ["trained", "trained"]}, r"without repeats"),
    ("realisations 0 (fig3)", "prune_distill.fig3", {"realisations": 0}, r"'realisations' .*>= 1, got 0"),
    ("realisations 0 (id)", "prune_distill.id_layers", {"realisations": 0}, r"'realisations' .*>= 1, got 0"),
    ("random_state -1", "prune_distill.fig3", {"random_state": -1}, r"'random_state' .*>= 0, got -1"),
    ("bins 1", "prune_distill.fig3", {"bins": 1}, r"'bins' .*>= 2, got 1"),
    ("n_images 20 too few", "prune_distill.fig3", {"n_images": 5}, r"'n_images' .*>= 20, got 5"),
    ("units as text", "prune_distill.fig3", {"units": "many"}, r"'units' parameter of Fig3Config must be an int"),
    ("layers as a number", "prune_distill.fig3", {"layers": 3}, r"'layers' parameter .*list of a string or null"),
    ("unknown correction", "prune_distill.fig3", {"correction": "magic"}, r"'correction' .*one of 'pt'"),
    ("unknown on_error", "prune_distill.fig3", {"on_error": "ignore"}, r"'on_error' .*one of 'raise'"),
    ("unknown site", "prune_distill.fig5", {"site": "middle"}, r"'site' parameter of Fig5Config"),
    ("C = 0", "prune_distill.fig5", {"C": 0.0}, r"'C' parameter of Fig5Config must be a finite number > 0"),
    ("discard 1.5", "prune_distill.id_layers", {"discard_fraction": 1.5}, r"'discard_fraction' .*\[0, 1\)"),
    ("empty datasets", "prune_distill.fig2", {"datasets": []}, r"'datasets' parameter of Fig2Config"),
    ("unknown key", "prune_distill.fig3", {"bin": 4}, r"unknown key\(s\) \['bin'\]"),
    ("empty model list", "prune_distill.figD", {"models": []}, r"'models' parameter of FigDConfig"),
    ("l* 0", "prune_distill.fig4", {"contrast_l_stars": [0]}, r"'contrast_l_stars' .*>= 1, got 0"),
]


@pytest.mark.parametrize("case, name, over, match", _RUN_CASES, ids=[c[0] for c in _RUN_CASES])
def test_bad_run_configs_fail_before_work(case, name, over, match, tmp_path, monkeypatch):
    from netphys.experiments import population, prune_distill
    from netphys.experiments.runner import run_experiment

    def no_work(*a, **k):  # pragma: no cover - reached only if validation let the config through
        raise AssertionError(f"{case}: work started before the config was rejected")

    for mod in (prune_distill, population):
        monkeypatch.setattr(mod, "load_model", no_work)
    with pytest.raises(NetphysError, match=match):
        run_experiment(name, over, tmp_path / "out", progress=False)


_FILE_CASES = [
    ("top-level list", "c.yaml", "- units\n- 3\n", r"top level is a mapping .*top-level list"),
    ("YAML syntax", "c.yaml", "units: [3\n", r"must be a valid YAML file.*parser says"),
    ("JSON syntax", "c.json", '{"units": 3,}', r"must be a valid JSON file.*parser says"),
    ("TOML syntax", "c.toml", "units = = 3\n", r"must be a valid TOML file"),
    ("unknown suffix", "c.ini", "units=3\n", r"a \.yaml, \.yml, \.toml or \.json file"),
]


@pytest.mark.parametrize("case, fname, text, match", _FILE_CASES, ids=[c[0] for c in _FILE_CASES])
def test_bad_config_files_through_the_cli(case, fname, text, match, tmp_path, capsys):
    from netphys.cli import main

    p = tmp_path / fname
    p.write_text(text)
    assert main(["run", "prune_distill.fig3", "--config", str(p), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    assert __import__("re").search(match, capsys.readouterr().err)


def test_missing_config_file_and_layers_string(tmp_path):
    from netphys.experiments.config import load_config
    from netphys.experiments.prune_distill import Fig3Config
    from netphys.experiments.runner import run_experiment

    with pytest.raises(NetphysError, match=r"'config' parameter .*an existing YAML/TOML/JSON file"):
        run_experiment("prune_distill.fig3", str(tmp_path / "nope.yaml"), tmp_path / "o", progress=False)
    assert load_config(Fig3Config, {"layers": "conv1_1"}).layers == ("conv1_1",)   # one layer, not letters


_TRAIN_CASES = [
    ("lr nan", ["--lr", "nan"], r"'lr' parameter of train must be"),
    ("lr 0", ["--lr", "0"], r"'lr' parameter of train must be"),
    ("width 0", ["--width", "0"], r"'width' parameter of train must be"),
    ("threads 0", ["--threads", "0"], r"'threads' parameter of train must be"),
    ("epochs 0", ["--epochs", "0"], r"'epochs' parameter of train must be"),
]


@pytest.mark.parametrize("case, args, match", _TRAIN_CASES, ids=[c[0] for c in _TRAIN_CASES])
def test_bad_train_arguments_exit_2_and_write_nothing(case, args, match, tmp_path, capsys):
    from netphys.cli import main

    (tmp_path / "train" / "a").mkdir(parents=True)
    out = tmp_path / "model"
    assert main(["train", str(tmp_path / "train"), "--out", str(out), "--no-progress", *args]) == 2
    assert __import__("re").search(match, capsys.readouterr().err)
    assert not out.exists() or not any(out.iterdir())


def test_train_out_unwritable_fails_before_training(tmp_path, capsys):
    from netphys.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("")
    (tmp_path / "train" / "a").mkdir(parents=True)
    assert main(["train", str(tmp_path / "train"), "--out", str(blocker / "m"), "--no-progress"]) == 2
    assert "'out' parameter" in capsys.readouterr().err
