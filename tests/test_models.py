"""Models: loading by name with explicit weights, layer aliases, training (unit + integration tier)."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from netphys._validation import NetphysError
from netphys.models import MODEL_NAMES, list_layers, load_model, model_info, resolve_layer
from netphys.models.layers import default_layers, layer_infos
from netphys.models.loading import default_model_dir

VGG_NAMES = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"]
#: convolutions per block of each VGG depth
BLOCKS = {"vgg11": (1, 1, 2, 2, 2), "vgg13": (2, 2, 2, 2, 2), "vgg16": (2, 2, 3, 3, 3),
          "vgg19": (2, 2, 4, 4, 4)}

SHIPPED = default_model_dir() / "manifest.json"
needs_shipped = pytest.mark.skipif(not SHIPPED.is_file(), reason=f"the shipped default model ({SHIPPED}) "
                                   "has not been trained yet")


def _meta_model(name):
    """A torchvision model built on the meta device (no memory, no init cost) for naming tests."""
    with torch.device("meta"):
        return torchvision.models.get_model(name, weights=None)


def _equal_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- names and aliases


@pytest.mark.parametrize("name", VGG_NAMES)
def test_vgg_aliases(name):
    model = _meta_model(name)
    model.netphys = None  # family from the class name, as for a user's torchvision model
    infos = layer_infos(model)
    depth = name.split("_")[0]
    want = [f"conv{b + 1}_{i + 1}" for b, n in enumerate(BLOCKS[depth]) for i in range(n)]
    convs = [li for li in infos if li.kind == "conv"]
    assert [li.alias for li in convs] == want
    assert [li.alias for li in infos if li.kind == "fc"] == ["fc6", "fc7", "fc8"]
    assert [li.alias for li in infos if li.kind == "pool"] == [f"pool{i}" for i in range(1, 6)]
    named = dict(model.named_modules())
    for li in convs:
        assert isinstance(named[li.module], torch.nn.Conv2d)
        # the activation after conv (after batch norm for _bn) is the ReLU
        assert isinstance(named[li.activation], torch.nn.ReLU)
    assert [li.module for li in infos if li.kind == "fc"] == ["classifier.0", "classifier.3", "classifier.6"]
    assert [li.activation for li in infos if li.kind == "fc"] == ["classifier.1", "classifier.4", None]
    assert [li.depth for li in infos if li.kind != "pool"] == list(range(1, len(want) + 4))


def test_vgg16_module_names():
    infos = {li.alias: li for li in layer_infos(_meta_model("vgg16"))}
    assert infos["conv1_1"].module == "features.0" and infos["conv1_1"].activation == "features.1"
    assert infos["conv5_3"].module == "features.28"
    assert infos["pool5"].module == "features.30"
    infos = {li.alias: li for li in layer_infos(_meta_model("vgg16_bn"))}
    assert infos["conv1_1"].activation == "features.2"  # after BatchNorm2d features.1


def test_alexnet_aliases_and_seeded_weights():
    model = load_model("alexnet", "random", random_state=1)
    assert _equal_state(model, load_model("alexnet", "random", random_state=1))
    assert model_info(model).preprocess.crop == 224
    table = list_layers(model)
    assert table.query("kind == 'conv'")["alias"].tolist() == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert table.query("kind == 'fc'")["alias"].tolist() == ["fc6", "fc7", "fc8"]
    assert resolve_layer(model, "fc6").module == "classifier.1"


def test_list_layers_shows_alias_and_module(small_vgg):
    table = list_layers(small_vgg)
    assert list(table.columns) == ["alias", "module", "kind", "type", "activation", "post_site", "calls", "depth"]
    assert len(table) == 13 + 5 + 3
    row = table.set_index("alias").loc["conv3_2"]
    # conv, batch norm, ReLU: conv3_2 is features.17 and its ReLU features.19
    assert row["module"] == "features.17" and row["type"] == "Conv2d" and row["activation"] == "features.19"
    assert default_layers(small_vgg)[0] == "conv1_1" and default_layers(small_vgg)[-1] == "fc8"
    assert len(default_layers(small_vgg)) == 16


def test_resolve_layer_by_alias_and_dotted_name(small_vgg):
    a = resolve_layer(small_vgg, "conv2_1")
    b = resolve_layer(small_vgg, "features.7")
    assert a == b and a.kind == "conv"
    # a leaf module that is not a conv/fc/pool is still addressable by its dotted name
    assert resolve_layer(small_vgg, "features.1").kind == "other"


@pytest.mark.parametrize("layer", ["conv9_9", "features", "", "classifier.99"])
def test_unknown_layer_lists_valid_names(small_vgg, layer):
    with pytest.raises(NetphysError, match=r"the 'layers' parameter of resolve_layer names an unknown layer, "
                       rf"got '{layer}'; valid layers are: conv1_1 \(features.0\), conv1_2 \(features.3\)"):
        resolve_layer(small_vgg, layer)


# ----------------------------------------------------------------------------- loading


def test_unknown_model_name():
    with pytest.raises(NetphysError, match=r"the 'name' parameter of load_model must be one of vgg11, "
                       r"vgg11_bn, .*alexnet.*netphys_vgg16.*, got 'vgg17'"):
        load_model("vgg17", "random")


def test_model_names_cover_the_issue():
    assert set(VGG_NAMES + ["alexnet", "netphys_vgg16"]) <= set(MODEL_NAMES)


def test_random_weights_seeded_and_rng_untouched():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = load_model("netphys_vgg16", "random", random_state=7)
    assert torch.equal(torch.get_rng_state(), state), "load_model changed the global torch RNG"
    b = load_model("netphys_vgg16", "random", random_state=7)
    c = load_model("netphys_vgg16", "random", random_state=8)
    assert _equal_state(a, b)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    assert not a.training
    info = model_info(a)
    assert info.weights == "random(seed=7)" and info.seed == 7 and info.input_size == 64
    assert info.family == "vgg"


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_random_weights_bad_seed(seed):
    with pytest.raises(NetphysError, match=r"the 'random_state' parameter of load_model must be a "
                       r"non-negative int seed"):
        load_model("netphys_vgg16", "random", random_state=seed)


def test_weights_file_round_trip(tmp_path, small_vgg):
    path = tmp_path / "w.pt"
    torch.save(small_vgg.state_dict(), path)
    m = load_model("netphys_vgg16", path)
    assert _equal_state(m, small_vgg)
    info = model_info(m)
    assert info.weights == "file:w.pt"
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # a checkpoint dict with a 'state_dict' entry and DataParallel 'module.' prefixes also loads
    torch.save({"state_dict": {f"module.{k}": v for k, v in small_vgg.state_dict().items()}}, path)
    assert _equal_state(load_model("netphys_vgg16", str(path)), small_vgg)


def test_weights_file_of_another_architecture(tmp_path, small_vgg):
    path = tmp_path / "small.pt"
    torch.save(small_vgg.state_dict(), path)
    with pytest.raises(NetphysError, match=r"the 'weights' parameter of load_model must be a state_dict for "
                       r"the 'alexnet' architecture, got '.*small.pt'; the file belongs to another "
                       r"architecture \(missing keys"):
        load_model("alexnet", path)
    wide = load_model("netphys_vgg16", "random").state_dict()
    wide["classifier.6.weight"] = torch.zeros(3, 256)
    torch.save(wide, path)
    with pytest.raises(NetphysError, match=r"shape mismatches \['classifier.6.weight: file \(3, 256\) vs "
                       r"model \(10, 256\)'\].*netphys train"):
        load_model("netphys_vgg16", path)


@pytest.mark.parametrize("content, match", [
    (None, r"must be 'random', 'default', 'imagenet' or the path of an existing weights file, got '.*nope.pt'"),
    (b"garbage", r"must be a readable PyTorch state_dict file \(.pt/.pth\), got '.*nope.pt'; torch.load failed"),
    ([1, 2, 3], r"must be a file holding a state_dict \(dict of tensors\)"),
])
def test_bad_weights_files(tmp_path, content, match):
    path = tmp_path / "nope.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(NetphysError, match=r"the 'weights' parameter of load_model " + match):
        load_model("netphys_vgg16", path)


def test_unknown_weights_keyword():
    with pytest.raises(NetphysError, match=r"the 'weights' parameter of load_model must be 'random', "
                       r"'default', 'imagenet' or the path of an existing weights file, got 'randm'"):
        load_model("netphys_vgg16", "randm")


def test_imagenet_weights_fail_fast_offline():
    from torch.hub import get_dir

    fname = Path(torchvision.models.VGG11_Weights.DEFAULT.url).name
    if (Path(get_dir()) / "checkpoints" / fname).is_file():
        pytest.skip("torchvision's ImageNet VGG-11 weights are cached on this machine")
    t0 = time.perf_counter()
    with pytest.raises(NetphysError, match=r"the 'weights' parameter of load_model must be a reachable weights "
                       r"source, got 'imagenet'; .*then pass the file: load_model\('vgg11', "
                       rf"weights='/path/to/{fname}'\)"):
        load_model("vgg11", "imagenet")
    assert time.perf_counter() - t0 < 10


def test_imagenet_weights_fail_fast_when_name_resolution_hangs(monkeypatch):
    """getaddrinfo ignores socket timeouts: a hanging DNS must not hang load_model."""
    import socket
    import threading

    from torch.hub import get_dir

    fname = Path(torchvision.models.AlexNet_Weights.DEFAULT.url).name
    if (Path(get_dir()) / "checkpoints" / fname).is_file():
        pytest.skip("torchvision's ImageNet AlexNet weights are cached on this machine")
    release = threading.Event()

    def hanging(*args, **kwargs):
        release.wait(60)
        raise OSError("released")

    monkeypatch.setattr(socket, "create_connection", hanging)
    t0 = time.perf_counter()
    try:
        with pytest.raises(NetphysError, match=r"cannot be reached \(TimeoutError\)"):
            load_model("alexnet", "imagenet")
    finally:
        release.set()
    assert time.perf_counter() - t0 < 6


def test_imagenet_weights_only_for_torchvision_models():
    with pytest.raises(NetphysError, match=r"the 'weights' parameter of load_model must be 'random', 'default' "
                       r"or a file path for 'netphys_vgg16', got 'imagenet'"):
        load_model("netphys_vgg16", "imagenet")


def test_load_model_device_and_mode(small_vgg):
    assert not small_vgg.training
    assert next(small_vgg.parameters()).device.type == "cpu"


@needs_shipped
def test_shipped_default_model():
    m = load_model("netphys_vgg16", "default")
    man = json.loads(SHIPPED.read_text())
    info = model_info(m)
    assert info.sha256 == man["sha256"]
    assert info.input_size == man["input"]["size"]
    assert info.weights.startswith("netphys-default")
    assert [li.alias for li in layer_infos(m) if li.kind != "pool"][-1] == "fc8"


# ----------------------------------------------------------------------------- training


def _tiny_image_folder(root: Path, n_per_class: int = 6, size: int = 32):
    rng = np.random.default_rng(0)
    for k, cls in enumerate(["dark", "light"]):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            base = 40 if k == 0 else 200
            a = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / cls / f"{i}.png")
    return root


@pytest.fixture
def tiny_train_dir(tmp_path):
    return _tiny_image_folder(tmp_path / "train")


def test_train_tiny_run_writes_manifest_and_reloads(tiny_train_dir, tmp_path):
    from netphys.train import TrainConfig, train

    out = tmp_path / "model"
    cfg = TrainConfig(epochs=1, batch_size=4, width=0.0625, size=32, random_state=0)
    rng_state = torch.get_rng_state()
    model, man = train(tiny_train_dir, tiny_train_dir, config=cfg, out=out, progress=False)
    assert torch.equal(torch.get_rng_state(), rng_state), "train changed the global torch RNG"
    assert (out / "weights.pt").is_file() and (out / "manifest.json").is_file()
    written = json.loads((out / "manifest.json").read_text())
    assert written["sha256"] == hashlib.sha256((out / "weights.pt").read_bytes()).hexdigest()
    assert written["architecture"]["width"] == 0.0625 and written["architecture"]["num_classes"] == 2
    assert written["data"]["classes"] == ["dark", "light"]
    assert written["seed"] == 0 and written["input"]["size"] == 32
    assert 0 <= written["val_top1"] <= 1
    assert not list(out.glob("*.tmp"))
    # reload: by the weights file (manifest beside it), by the folder, by the manifest itself
    for w in (out / "weights.pt", out, out / "manifest.json"):
        m = load_model("netphys_vgg16", w)
        assert _equal_state(m, model)
        assert model_info(m).input_size == 32 and model_info(m).sha256 == written["sha256"]
    # the same seed gives the same weights
    _, man2 = train(tiny_train_dir, None, config=cfg, out=tmp_path / "again", progress=False)
    assert man2["sha256"] == written["sha256"]


def test_train_manifest_sha_mismatch(tiny_train_dir, tmp_path):
    from netphys.train import TrainConfig, train

    out = tmp_path / "model"
    train(tiny_train_dir, config=TrainConfig(epochs=1, batch_size=6, width=0.0625, size=32), out=out,
          progress=False)
    man = json.loads((out / "manifest.json").read_text())
    man["sha256"] = "0" * 64
    (out / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(NetphysError, match=r"the 'weights' parameter of load_model must be a weights file "
                       r"matching the sha256 of its manifest.json"):
        load_model("netphys_vgg16", out)


@pytest.mark.parametrize("kw, match", [
    ({"batch_size": 64}, r"the 'batch_size' parameter of train must be an int <= the number of training "
     r"images \(12\), got 64; pass a smaller batch_size"),
    ({"epochs": 0}, r"the 'epochs' parameter of train must be an int >= 1, got 0"),
])
def test_train_errors(tiny_train_dir, kw, match):
    from netphys.train import TrainConfig, train

    with pytest.raises(NetphysError, match=match):
        train(tiny_train_dir, config=TrainConfig(size=32, width=0.0625, **kw), progress=False)


def test_train_needs_two_classes(tmp_path):
    from netphys.train import TrainConfig, train

    root = tmp_path / "one"
    (root / "only").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(root / "only" / "a.png")
    with pytest.raises(NetphysError, match=r"the 'train_dir' parameter of train must be a folder with at "
                       r"least 2 class sub-folders"):
        train(root, config=TrainConfig(size=32, batch_size=1), progress=False)


def test_reference_cnn_by_name_matches_builder():
    import torch

    from netphys.models import list_layers, load_model
    from netphys.models.cifar import reference_cnn

    a = load_model("reference_cnn", "random", random_state=3)
    b = reference_cnn(random_state=3)
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert list_layers(a)["alias"].tolist()[:2] == ["conv1", "conv2"]
    assert a.netphys.input_size == 32
