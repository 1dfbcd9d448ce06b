"""The recording rig: sample single units of any layer and record their responses to stimuli."""
from __future__ import annotations

import datetime as _dt
import json
import logging
import platform

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from .._random import check_random_state
from .._validation import NetphysError, check_choice, check_int, param_error
from ..models.layers import default_layers, resolve_layer
from ..models.loading import model_info
from ..stimuli import StimulusSet
from .hooks import StopForward, hooks, restored

log = logging.getLogger(__name__)

UNIT_COLUMNS = ["layer", "module", "kind", "depth", "channel", "row", "col"]


def _model_device(model: nn.Module):
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def layer_shapes(model: nn.Module, layers, input_size: int, in_channels: int = 3, device=None) -> dict:
    """Output shape (without batch) of each layer for one ``input_size`` image (one forward pass)."""
    infos = [resolve_layer(model, l, "layer_shapes") for l in layers]
    shapes: dict = {}

    def make(name):
        def fn(_m, _i, out):
            shapes[name] = tuple(out.shape[1:])
        return fn

    device = device or _model_device(model)
    with restored(model), hooks(model, {li.module: make(li.module) for li in infos}), torch.no_grad():
        model(torch.zeros(1, in_channels, input_size, input_size, device=device))
    return {li.alias: shapes[li.module] for li in infos}


def sample_units(model: nn.Module, layers=None, units=250, *, input_size: int | None = None,
                 random_state=0, allow_fewer: bool = False) -> pd.DataFrame:
    """Sample units uniformly without replacement over (channel, row, col) of each layer.

    Parameters
    ----------
    model : nn.Module
    layers : list of str, optional
        Aliases or dotted names; default all conv and FC layers.
    units : int or "all"
        Units per layer.
    input_size : int, optional
        Input image size (default: the model's own, from :func:`load_model`).
    random_state : int or Generator
    allow_fewer : bool
        Take all units of a layer that has fewer than ``units`` (e.g. a 10-way fc8) instead of raising.

    Returns
    -------
    pandas.DataFrame
        One row per unit with columns layer, module, kind, depth, channel, row, col (row = col = -1 for
        FC units). Re-use it with :func:`record` to record the same units of another network.
    """
    func = "sample_units"
    layers = list(layers) if layers is not None else default_layers(model)
    if not layers:
        raise param_error("layers", func, "a non-empty list of layer names", layers)
    if input_size is None:
        input_size = model_info(model).input_size or 224
    input_size = check_int(input_size, "input_size", func, min_value=1)
    rng = check_random_state(random_state, func)
    shapes = layer_shapes(model, layers, input_size)
    frames = []
    for l in layers:
        li = resolve_layer(model, l, func)
        shp = shapes[li.alias]
        total = int(np.prod(shp))
        if isinstance(units, str) and units == "all":
            k = total
        else:
            k = check_int(units, "units", func, min_value=1)
            if k > total and allow_fewer:
                log.info("layer %s has %d units (< %d asked); taking all", li.alias, total, k)
                k = total
            if k > total:
                raise param_error("units", func, f"<= the number of units of layer {li.alias!r} ({total}, "
                                  f"shape {shp})", k, "ask for fewer units, pass units='all' or allow_fewer=True")
        flat = np.sort(rng.choice(total, size=k, replace=False)) if k < total else np.arange(total)
        if len(shp) == 3:
            ch, r, c = np.unravel_index(flat, shp)
        elif len(shp) == 1:
            ch, r, c = flat, np.full(k, -1), np.full(k, -1)
        else:
            raise NetphysError(f"layer {li.alias!r} has output shape {shp}; only (C, H, W) and (F,) "
                               "outputs can be recorded")
        frames.append(pd.DataFrame({"layer": li.alias, "module": li.module, "kind": li.kind,
                                    "depth": li.depth, "channel": ch.astype(int), "row": r.astype(int),
                                    "col": c.astype(int)}))
    return pd.concat(frames, ignore_index=True)


def _flat_index(table: pd.DataFrame, shape) -> np.ndarray:
    if len(shape) == 3:
        return np.ravel_multi_index((table["channel"].to_numpy(), table["row"].to_numpy(),
                                     table["col"].to_numpy()), shape)
    return table["channel"].to_numpy()


def provenance(model: nn.Module, **extra) -> dict:
    """Provenance attributes stored with every result (JSON-serialisable values)."""
    import netphys

    info = model_info(model)
    out = {
        "netphys_version": netphys.__version__,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "model": info.name,
        "weights": info.weights,
        "weights_sha256": info.sha256 or "",
        "model_info": json.dumps(info.to_dict(), default=str),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    for k, v in extra.items():
        out[k] = v if isinstance(v, (str, int, float)) else json.dumps(v, default=str)
    return out


def record(model: nn.Module, stimuli: StimulusSet, layers=None, units=250, *, site: str = "pre",
           random_state=0, batch_size: int = 64, device=None, progress: bool = False,
           allow_fewer: bool = False) -> xr.DataArray:
    """Record the responses of sampled single units to a stimulus set.

    Parameters
    ----------
    model : nn.Module
    stimuli : StimulusSet
        Streamed in batches of ``batch_size`` (only one batch of images is in memory at a time).
    layers : list of str, optional
        Aliases (``conv1_1``, ``fc6``) or dotted module names; default all conv and FC layers.
    units : int, "all" or DataFrame
        Units per layer, or a unit table from :func:`sample_units` / a previous recording's
        ``unit`` coordinates (to record the same units on another network).
    site : {"pre", "post"}
        ``"pre"``: output of the conv/linear module, before any batch norm or activation.
        ``"post"``: output of the activation that follows it (the layer output itself if none).
        In-place activations cannot corrupt ``pre`` values: sampled units are copied in the hook.
    random_state : int or Generator
        Seed of the unit sampling.
    batch_size : int
    device : str or torch.device, optional
        Where to run; default the model's device. The model's device and mode are restored.
    progress : bool
        Show a tqdm progress bar.
    allow_fewer : bool
        Record all units of layers smaller than ``units`` instead of raising.

    Returns
    -------
    xarray.DataArray, dims ("stimulus", "unit"), float32
        Unit coordinates layer, module, kind, depth, channel, row, col, site; stimulus coordinates
        label, class_name, source (and any other stimulus columns); provenance in ``attrs``.

    Raises
    ------
    NetphysError
        Unknown layer (lists the valid ones), more units than a layer has, batch_size <= 0,
        unknown site, images of the wrong size for the model, or NaN/inf activations.
    """
    from tqdm.auto import tqdm

    func = "record"
    if not isinstance(stimuli, StimulusSet):
        raise param_error("stimuli", func, "a netphys StimulusSet", type(stimuli).__name__,
                          "build one with StimulusSet.from_folder or StimulusSet.from_arrays")
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    check_choice(site, "site", func, ("pre", "post"))
    if len(stimuli) == 0:
        raise param_error("stimuli", func, "a non-empty StimulusSet", "0 stimuli")
    run_device = torch.device(device) if device is not None else _model_device(model)
    if isinstance(units, pd.DataFrame):
        table = units.reset_index(drop=True)
        missing = [c for c in ("layer", "channel", "row", "col") if c not in table.columns]
        if missing:
            raise param_error("units", func, "a unit table with columns layer, channel, row, col",
                              f"a DataFrame missing {missing}")
        layers = list(dict.fromkeys(table["layer"]))
        infos = {l: resolve_layer(model, l, func) for l in layers}
        table = table.assign(module=[infos[l].module for l in table["layer"]],
                             kind=[infos[l].kind for l in table["layer"]],
                             depth=[infos[l].depth for l in table["layer"]])
        seed_note = "from unit table"
    else:
        table = sample_units(model, layers, units, input_size=stimuli.size, random_state=random_state,
                             allow_fewer=allow_fewer)
        layers = list(dict.fromkeys(table["layer"]))
        infos = {l: resolve_layer(model, l, func) for l in layers}
        seed_note = random_state if isinstance(random_state, int) else "generator"
    shapes = layer_shapes(model, layers, stimuli.size)
    hook_targets: dict[str, list] = {}
    col_slices = {}
    for l in layers:
        li = infos[l]
        rows = np.flatnonzero(table["layer"].to_numpy() == l)
        sub = table.iloc[rows]
        shp = shapes[l]
        try:
            flat = _flat_index(sub, shp)
        except ValueError as exc:
            raise param_error("units", func, f"units inside layer {l!r} of shape {shp}", "out-of-range unit",
                              str(exc)) from None
        target = li.module
        if site == "post":
            if li.activation is None:
                log.info("layer %s has no activation after it; site='post' records its output", l)
            else:
                target = li.activation
        hook_targets.setdefault(target, []).append((l, rows, torch.as_tensor(np.array(flat, dtype=np.int64), device=run_device)))
        col_slices[l] = rows
    n, u = len(stimuli), len(table)
    out = np.empty((n, u), dtype=np.float32)
    current: dict = {"idx": None, "fired": {}}
    # the module whose hook fires last in the forward pass (for early stopping)
    order: list[str] = []

    def make(target, entries):
        def fn(_m, _inp, output):
            if not isinstance(output, torch.Tensor):
                raise NetphysError(f"module {target!r} returned {type(output).__name__}, not a tensor")
            current["fired"][target] = current["fired"].get(target, 0) + 1
            if current["fired"][target] > 1:
                raise NetphysError(f"module {target!r} runs more than once per forward pass (a shared "
                                   "activation module, as in ResNet); record site='pre' or name another layer")
            flat_out = output.detach().flatten(1)
            for (l, rows, fidx) in entries:
                vals = flat_out.index_select(1, fidx).to("cpu", torch.float32).numpy()
                out[np.ix_(current["idx"], rows)] = vals
            if target == current.get("last"):
                raise StopForward
        return fn

    fns = {t: make(t, e) for t, e in hook_targets.items()}
    # one dry run to learn the firing order of the hooked modules
    seq: list[str] = []
    with restored(model, device=run_device), torch.no_grad():
        probe = {t: (lambda t_: (lambda m, i, o: seq.append(t_)))(t) for t in hook_targets}
        with hooks(model, probe):
            model(torch.zeros(1, 3, stimuli.size, stimuli.size, device=run_device))
        current["last"] = seq[-1] if seq else None
        bar = tqdm(total=n, desc=f"record {model_info(model).name}", unit="img", disable=not progress)
        try:
            with hooks(model, fns):
                for idx, x in stimuli.batches(batch_size, device=run_device):
                    current["idx"] = idx
                    current["fired"] = {}
                    try:
                        model(x)
                    except StopForward:
                        pass
                    bar.update(len(idx))
        except RuntimeError as exc:
            raise NetphysError(f"the forward pass of record failed on images of shape "
                               f"(batch, 3, {stimuli.size}, {stimuli.size}): {exc}; check that the stimuli's "
                               "preprocessing matches the model's input") from exc
        finally:
            bar.close()
    bad = ~np.isfinite(out)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0))
        lay = sorted(set(table["layer"].iloc[cols]))
        raise NetphysError(f"record produced {int(bad.sum())} NaN/inf activations in layer(s) {lay}; the model "
                           "or its inputs contain non-finite values")
    coords = {c: ("unit", table[c].to_numpy()) for c in UNIT_COLUMNS}
    coords["site"] = ("unit", np.full(u, site))
    for c in stimuli.coords.columns:
        coords[c if c != "unit" else "stimulus_unit"] = ("stimulus", stimuli.coords[c].to_numpy())
    coords["stimulus"] = np.arange(n)
    coords["unit"] = np.arange(u)
    attrs = provenance(model, site=site, seed=seed_note, batch_size=batch_size,
                       stimuli=stimuli.to_dict(), layers=layers)
    da = xr.DataArray(out, dims=("stimulus", "unit"), coords=coords, name="activation", attrs=attrs)
    return da


def unit_table(recording: xr.DataArray) -> pd.DataFrame:
    """The unit table of a recording (to record the same units on another network)."""
    return pd.DataFrame({c: recording.coords[c].values for c in UNIT_COLUMNS if c in recording.coords})
