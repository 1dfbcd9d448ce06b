"""Bring your own model: nn.Module / import path / timm through load_model, record and the runner."""
from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from netphys._validation import NetphysError
from netphys.models import as_preprocess, load_model, model_info, parameters_sha256
from netphys.recording import record
from netphys.stimuli import Preprocess, StimulusSet, TensorStimulusSet, as_stimulus_set

USERMOD = textwrap.dedent('''
    import torch
    from torch import nn


    class Tiny(nn.Module):
        netphys_preprocess = {"resize": 32, "crop": 32}

        def __init__(self, num_classes=10):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                          nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.head = nn.Linear(8 * 8 * 8, num_classes)

        def forward(self, x):
            return self.head(torch.flatten(self.features(x), 1))


    def make():
        return Tiny()


    def not_a_model():
        return 3
''')


@pytest.fixture
def usermod(tmp_path, monkeypatch):
    """A user package ``usermod`` on sys.path, and a weights file for its ``make()``."""
    (tmp_path / "usermod.py").write_text(USERMOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("usermod", None)
    import usermod as mod

    torch.manual_seed(123)
    trained = mod.make()
    path = tmp_path / "tiny_weights.pt"
    torch.save(trained.state_dict(), path)
    yield mod, path, trained
    sys.modules.pop("usermod", None)


def _tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3),
                         nn.ReLU())


# ----------------------------------------------------------------------------- (a) a user's nn.Module
def test_module_with_dict_preprocess_keeps_weights_and_records_identity():
    net = _tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    m = load_model(net, preprocess={"resize": 40, "crop": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25] * 3})
    assert m is net and not m.training
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    info = model_info(m)
    assert info.name == "torch.nn.modules.container.Sequential" and info.weights == "user"
    assert info.kind == "user" and info.input_size == 32
    assert info.preprocess == Preprocess(resize=40, crop=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    # the parameter hash: same tensors -> same hash; one changed weight -> another hash
    assert info.extra["parameters_sha256"] == parameters_sha256(_tiny_net())
    other = _tiny_net()
    with torch.no_grad():
        other[0].weight[0, 0, 0, 0] += 1e-3
    assert parameters_sha256(other) != info.extra["parameters_sha256"]


def test_module_random_is_a_seeded_copy_and_file_weights_load(tmp_path):
    net = _tiny_net()
    r1 = load_model(net, "random", random_state=4)
    r2 = load_model(_tiny_net(), "random", random_state=4)
    r3 = load_model(_tiny_net(), "random", random_state=5)
    assert r1 is not net and model_info(r1).kind == "random" and model_info(r1).weights == "random(seed=4)"
    assert parameters_sha256(r1) == parameters_sha256(r2) != parameters_sha256(r3)
    assert parameters_sha256(net) == parameters_sha256(_tiny_net())  # the caller's module is untouched
    path = tmp_path / "w.pt"
    torch.save(r3.state_dict(), path)
    loaded = load_model(_tiny_net(), path)
    assert parameters_sha256(loaded) == parameters_sha256(r3)
    assert model_info(loaded).weights == "file:w.pt" and model_info(loaded).kind == "trained"
    assert model_info(load_model(_tiny_net(), "my-finetune")).weights == "my-finetune"


def test_module_errors():
    with pytest.raises(NetphysError, match=r"the 'preprocess' parameter of load_model must be a Preprocess, "
                       r"'imagenet', 'caffe' or a dict with keys among resize, crop.*unknown key\(s\) \['size'\]"):
        load_model(_tiny_net(), preprocess={"size": 32})
    with pytest.raises(NetphysError, match=r"the 'input_size' parameter of load_model must be the crop of the "
                       r"preprocessing \(32\), got 64"):
        load_model(_tiny_net(), preprocess={"crop": 32}, input_size=64)
    with pytest.raises(NetphysError, match=r"'weights' parameter of load_model must be 'random' or the path "
                       r"of an existing local weights file.*got '/nonexistent/w.pt'"):
        load_model(_tiny_net(), "/nonexistent/w.pt")

    class Raw(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.scale

    with pytest.raises(NetphysError, match=r"\['scale'\] cannot be re-initialised; pass "
                       r"'package.module:factory'"):
        load_model(Raw(), "random")


def test_as_preprocess_forms():
    assert as_preprocess({"crop": 48}) == Preprocess(resize=48, crop=48)
    assert as_preprocess({"resize": 256, "crop": 224}).resize == 256
    assert as_preprocess("imagenet", 64) == Preprocess.imagenet(64)
    assert as_preprocess(None) is None
    with pytest.raises(NetphysError, match=r"the 'std' parameter of Preprocess must be 3 finite numbers"):
        as_preprocess({"crop": 32, "std": [1, 1]})


# ----------------------------------------------------------------------------- (b) package.module:factory
def test_import_path_random_and_file(usermod):
    mod, path, trained = usermod
    m = load_model("usermod:make", path)
    assert type(m).__name__ == "Tiny" and parameters_sha256(m) == parameters_sha256(trained)
    info = model_info(m)
    assert info.name == "usermod:make" and info.kind == "trained" and info.weights == "file:tiny_weights.pt"
    assert info.extra["class"] == "usermod.Tiny" and info.preprocess.crop == 32 and info.input_size == 32
    a, b = load_model("usermod:make", "random", random_state=1), load_model("usermod:make", "random", random_state=1)
    c = load_model("usermod:Tiny", "random", random_state=2)  # a class is a factory too
    assert parameters_sha256(a) == parameters_sha256(b) != parameters_sha256(c)
    assert model_info(a).kind == "random" and model_info(a).seed == 1
    state = torch.get_rng_state()
    load_model("usermod:make", "random", random_state=3)
    assert torch.equal(state, torch.get_rng_state())  # the global torch RNG is left alone


def test_import_path_errors(usermod, tmp_path):
    with pytest.raises(NetphysError, match=r"'name' parameter of load_model must be an importable "
                       r"'package.module:factory', got 'nosuchpkg_xyz:make'; importing 'nosuchpkg_xyz' failed"):
        load_model("nosuchpkg_xyz:make", "random")
    with pytest.raises(NetphysError, match=r"'usermod' has no attribute 'build'"):
        load_model("usermod:build", "random")
    with pytest.raises(NetphysError, match=r"factory returns an nn.Module, got 'usermod:not_a_model'; it "
                       r"returned a int"):
        load_model("usermod:not_a_model", "random")
    with pytest.raises(NetphysError, match=r"a user model has no default weights"):
        load_model("usermod:make")
    bad = tmp_path / "bad.pt"
    torch.save(_tiny_net().state_dict(), bad)
    with pytest.raises(NetphysError, match=r"the 'weights' parameter of load_model must be a state_dict for the "
                       r"'usermod:make' architecture, got '.*bad.pt'; the file belongs to another architecture "
                       r"\(missing keys \['features.0.weight'.*unexpected keys \['0.weight'"):
        load_model("usermod:make", bad)
    with pytest.raises(NetphysError, match=r"the 'name' parameter of load_model must be one of vgg11, .*"
                       r"'package.module:factory', 'timm:<name>' \(with the extra netphys\[timm\]\) or an "
                       r"nn.Module, got 'vgg17'"):
        load_model("vgg17", "random")


def test_checkpoint_dict_is_read(usermod, tmp_path):
    _, _, trained = usermod
    p = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in trained.state_dict().items()}}, p)
    assert parameters_sha256(load_model("usermod:make", p)) == parameters_sha256(trained)


# ----------------------------------------------------------------------------- record: tensors, DataLoaders
def _pixels(n=12, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_as_stimulus_set_round_trips():
    pre = Preprocess.imagenet(32)
    u8 = _pixels()
    s = as_stimulus_set(u8, pre)
    assert type(s) is StimulusSet and np.array_equal(s.load_images(), u8)
    x = s.tensor()
    t = as_stimulus_set(x, pre)
    assert isinstance(t, TensorStimulusSet)
    assert torch.equal(t.tensor(), x)  # float input is used exactly as given
    assert np.array_equal(t.load_images(), u8)  # pixels recovered by inverting the preprocessing
    sub = t.take([3, 1])
    assert torch.equal(sub.tensor(), x[[3, 1]])
    # NCHW uint8 is pixels too; other sizes go through the preprocessing's geometry
    assert np.array_equal(as_stimulus_set(torch.from_numpy(u8).permute(0, 3, 1, 2), pre).load_images(), u8)
    assert as_stimulus_set(_pixels(size=48), pre).load_images().shape == (12, 32, 32, 3)
    # DataLoader of (images, labels), with class names from the dataset
    ds = TensorDataset(x, torch.arange(12) % 3)
    ds.classes = ["a", "b", "c"]
    d = as_stimulus_set(DataLoader(ds, batch_size=5), pre)
    assert torch.equal(d.tensor(), x) and d.labels.tolist() == [0, 1, 2] * 4 and d.class_names == ["a", "b", "c"]
    assert torch.equal(as_stimulus_set(ds, pre).tensor(), x)  # a Dataset is read in order


def test_as_stimulus_set_errors():
    with pytest.raises(NetphysError, match=r"the 'stimuli' parameter of record must be a netphys StimulusSet, "
                       r"got 'list'; build one with StimulusSet.from_folder .* or a torch DataLoader"):
        as_stimulus_set([1, 2], func="record")
    with pytest.raises(NetphysError, match=r"got 'ndarray'; .*\(got shape \(2, 8, 8, 4\)\)"):
        as_stimulus_set(np.zeros((2, 8, 8, 4), np.uint8))
    with pytest.raises(NetphysError, match=r"\(got dtype torch.float32 and shape \(2, 8, 8, 3\); "
                       r"float images must be \(N, 3, H, W\) network input\)"):
        as_stimulus_set(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(NetphysError, match=r"must be finite network input"):
        as_stimulus_set(torch.full((2, 3, 8, 8), float("nan")))
    with pytest.raises(NetphysError, match=r"'labels' parameter of as_stimulus_set must be a 1-D array of 2"):
        as_stimulus_set(torch.zeros(2, 3, 8, 8), labels=[0, 1, 2])


def test_tensor_records_like_the_forward_pass():
    """Recording a float tensor gives exactly the conv outputs model(x) computes (known answer)."""
    net = load_model(_tiny_net(), preprocess={"crop": 16})
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    stim = as_stimulus_set(x, model=net)
    rec = record(net, stim, ["0"], units="all")
    want = net[0](x).detach().reshape(6, -1).numpy()
    order = np.ravel_multi_index((rec["channel"].values, rec["row"].values, rec["col"].values), (4, 16, 16))
    np.testing.assert_allclose(rec.values, want[:, order], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- the runner takes user models
def test_fig3_runs_a_user_model_and_records_its_identity(usermod, tmp_path):
    from netphys.experiments import run_experiment

    _, path, trained = usermod
    cfg = {"model": "usermod:make", "weights": str(path), "layers": ["conv1", "conv2"], "n_images": 40,
           "units": 6, "realisations": 1, "features": ["luminosity", "category"], "n_shuffles": 0,
           "bins": 4, "batch_size": 20}
    run = run_experiment("prune_distill.fig3", cfg, tmp_path / "out", progress=False, report=False)
    models = json.loads(run.result.attrs["models"])
    idents = list(models.values()) if isinstance(models, dict) else models
    base = [m for m in idents if m.get("weights") == "file:tiny_weights.pt"]
    assert base, idents
    assert base[0]["class"] == "usermod.Tiny" and base[0]["name"] == "usermod:make"
    assert base[0]["parameters_sha256"] == parameters_sha256(trained)
    info = run.result["information"]
    assert np.isfinite(info.sel(feature="luminosity").values).all()


# ----------------------------------------------------------------------------- (c) timm (optional extra)
def test_timm_missing_names_the_extra(monkeypatch):
    from netphys.models import loading

    monkeypatch.setattr(loading, "_timm", lambda: None)
    with pytest.raises(NetphysError, match=r"the 'name' parameter of load_model must be a timm model name with "
                       r"timm installed, got 'timm:resnet18'; timm is an optional extra: pip install "
                       r"'netphys\[timm\]'"):
        load_model("timm:resnet18", "random")


def test_timm_model_from_local_file_with_its_preprocessing(tmp_path):
    timm = pytest.importorskip("timm", reason="timm is not installed (pip install 'netphys[timm]')")
    from timm.data import resolve_data_config

    m = load_model("timm:resnet18", "random", random_state=1)
    info = model_info(m)
    cfg = resolve_data_config({}, model=m)
    assert info.kind == "random" and info.name == "timm:resnet18"
    assert info.preprocess.crop == cfg["input_size"][-1] == 224
    assert info.preprocess.resize == round(224 / cfg["crop_pct"])  # 236 for crop_pct 0.95
    assert info.preprocess.mean == tuple(cfg["mean"]) and info.preprocess.std == tuple(cfg["std"])
    p = tmp_path / "r18.pth"
    torch.save(m.state_dict(), p)
    again = load_model("timm:resnet18", p)
    assert parameters_sha256(again) == parameters_sha256(m) and model_info(again).kind == "trained"
    assert model_info(again).extra["class"] == "timm.models.resnet.ResNet"
    assert parameters_sha256(load_model("timm:resnet18", "random", random_state=2)) != parameters_sha256(m)
    # a bare timm name not in MODEL_NAMES also works; resnet18 stays torchvision's
    assert model_info(load_model("resnet10t", "random")).name == "timm:resnet10t"
    assert model_info(load_model("resnet18", "random")).name == "resnet18"
    with pytest.raises(NetphysError, match=r"netphys never downloads timm weights"):
        load_model("timm:resnet18")
    with pytest.raises(NetphysError, match=r"a state_dict for the 'timm:resnet10t' architecture"):
        load_model("timm:resnet10t", p)
    # record on a timm network: the stem conv, checked against the module's own output
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    small = load_model("timm:resnet10t", "random", input_size=64)
    assert model_info(small).preprocess.crop == 64
    rec = record(small, as_stimulus_set(x, model=small), ["conv1.0"], units=20)
    full = small.conv1[0](x).detach().numpy()
    want = full[:, rec["channel"].values, rec["row"].values, rec["col"].values]
    np.testing.assert_allclose(rec.values, want, rtol=1e-5, atol=1e-6)


def test_record_takes_tensors_arrays_and_dataloaders():
    """record() coerces its stimuli: a tensor, uint8 pixels and a DataLoader give the same responses."""
    net = load_model(_tiny_net(), preprocess=Preprocess.imagenet(16))
    u8 = _pixels(n=8, size=16, seed=3)
    ref_set = StimulusSet.from_arrays(u8, preprocess=Preprocess.imagenet(16))
    ref = record(net, ref_set, ["0", "3"], units=7)
    x = ref_set.tensor()
    for stim in (x, u8, DataLoader(TensorDataset(x, torch.zeros(8, dtype=torch.long)), batch_size=3)):
        got = record(net, stim, ["0", "3"], units=7)
        np.testing.assert_array_equal(got.values, ref.values)
    with pytest.raises(NetphysError, match=r"the 'stimuli' parameter of record must be a netphys StimulusSet, "
                       r"got 'str'; build one with"):
        record(net, "images/", ["0"], units=2)
