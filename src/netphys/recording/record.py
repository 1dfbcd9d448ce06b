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
from .._validation import NetphysError, check_choice, check_device, check_int, param_error
from ..models.layers import CallSite, default_layers, module_calls, post_error, resolve_layer
from ..models.loading import model_info
from ..stimuli import StimulusSet, as_stimulus_set
from .capture import Capture, site_reader
from .hooks import hooks, restored

log = logging.getLogger(__name__)

UNIT_COLUMNS = ["layer", "module", "kind", "depth", "channel", "row", "col"]


def _model_device(model: nn.Module):
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def layer_shapes(model: nn.Module, layers, input_size: int, in_channels: int = 3, device=None) -> dict:
    """Output shape (without batch) of each layer for one ``input_size`` image (one forward pass).

    Raises
    ------
    NetphysError
        Unknown layers, layers the forward pass never runs, a bad ``device``, or an ``input_size`` the
        network cannot process (the forward pass fails).
    """
    return _layer_shapes(model, layers, input_size, in_channels=in_channels, device=device,
                         func="layer_shapes", param="input_size")


def _size_fix(model: nn.Module) -> str:
    info = model_info(model)
    known = info.input_size
    if known:
        return (f"the model {info.name!r} takes {known}x{known} px images; build the stimuli at that size "
                f"with preprocess=Preprocess(resize={known}, crop={known})")
    return ("build the stimuli at the size the network expects with preprocess=Preprocess(resize=..., "
            "crop=...)")


def _layer_shapes(model, layers, input_size, *, in_channels=3, device=None, func: str, param: str) -> dict:
    """:func:`layer_shapes`; a failing forward pass becomes the templated error on ``param`` of ``func``."""
    infos = [resolve_layer(model, l, func, sites=True) for l in layers]
    sites = {li.pre: li.alias for li in infos}
    shapes = _probe(model, sites, input_size, in_channels=in_channels, device=device, func=func, param=param)
    return {li.alias: shapes[li.pre] for li in infos}


def _site_error(func: str, param: str, label: str, site: CallSite, n: int):
    """The error for a site whose module runs ``n`` times while the site names another call count."""
    m = site.module
    if n == 0:
        return param_error("layers", func, "layers that the model's forward pass runs", [label],
                           "these modules are defined but never called; record other layers")
    if site.call is None:
        parent = m.rpartition(".")[0]
        block = f", or the block {parent!r} for its output" if parent else ""
        what = ("a layer whose activation runs once per forward pass" if param == "site"
                else "call sites that run once per forward pass")
        return param_error(param, func, what, label if param == "layers" else "post",
                           f"module {m!r} runs {n} times per forward pass (a shared module, as ResNet's "
                           f"relu); name one call as layers=['{m}:0'] ... ['{m}:{n - 1}']{block}")
    return param_error("layers", func, f"a call index < {n} (module {m!r} runs {n} times per forward pass)",
                       label, f"name one of '{m}:0' ... '{m}:{n - 1}'")


def _probe(model, sites: dict, input_size, *, in_channels=3, device=None, func: str, param: str,
           site_param: dict | None = None) -> dict:
    """One forward pass on a zero image: the output shape (without batch) at each call site.

    ``sites`` maps :class:`CallSite` -> the name to show in errors. Every site must exist: its module
    runs once per forward pass (``call=None``) or at least ``call + 1`` times, its output is a tensor,
    and a leaf module runs as often as the traced graph says.
    """
    device = check_device(device, func)
    by_module: dict[str, set] = {}
    for st in sites:
        by_module.setdefault(st.module, set()).add(st.call)
    calls: dict[str, int] = {}
    outs: dict = {}

    def make(name):
        wanted = by_module[name]

        def fn(_m, _i, out):
            k = calls.get(name, 0)
            calls[name] = k + 1
            if k in wanted or (None in wanted and k == 0):
                outs[(name, k)] = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else type(out).__name__
        return fn

    device = device or _model_device(model)
    try:
        with restored(model, device=device), hooks(model, {m: make(m) for m in by_module}), torch.no_grad():
            model(torch.zeros(1, in_channels, input_size, input_size, device=device))
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        got = input_size if param == "input_size" else f"{input_size}x{input_size} px images"
        raise param_error(param, func, "images the network can process", got,
                          f"its forward pass on a zero image of shape (1, {in_channels}, {input_size}, "
                          f"{input_size}) failed ({type(exc).__name__}: {first}); " + _size_fix(model)) from exc
    unused = [label for st, label in sites.items() if calls.get(st.module, 0) == 0]
    if unused:
        raise param_error("layers", func, "layers that the model's forward pass runs", unused,
                          "these modules are defined but never called; record other layers")
    shapes = {}
    for st, label in sites.items():
        n = calls[st.module]
        traced = module_calls(model, st.module)
        if traced is not None and traced != n:
            raise NetphysError(f"module {st.module!r} ran {n} times in the forward pass of {func} but "
                               f"{traced} times in the graph traced by torch.fx (data-dependent control "
                               "flow?); record the output of a block around it instead")
        if (st.call is None and n != 1) or (st.call is not None and st.call >= n):
            raise _site_error(func, (site_param or {}).get(st, "layers"), label, st, n)
        shp = outs[(st.module, st.call or 0)]
        if not isinstance(shp, tuple):
            raise param_error("layers", func, "modules whose output is a tensor", label,
                              f"module {st.module!r} returns {shp}; record a sub-module")
        shapes[st] = shp
    return shapes


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
        Input image size (default: the model's own, from :func:`load_model`; 224 if unknown).
    random_state : int or Generator, default 0
    allow_fewer : bool
        Take all units of a layer that has fewer than ``units`` (e.g. a 10-way fc8) instead of raising.

    Returns
    -------
    pandas.DataFrame
        One row per unit with columns layer, module, kind, depth, channel, row, col (row = col = -1 for
        FC units). Re-use it with :func:`record` to record the same units of another network.
    """
    return _sample_units(model, layers, units, input_size=input_size, random_state=random_state,
                         allow_fewer=allow_fewer, func="sample_units")


def _resolve_layers(model, layers, func: str):
    """``(names, LayerInfos)``: one name, a list, or ``None`` (the default layers); never empty."""
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers) if layers is not None else default_layers(model)
    if not layers:
        raise param_error("layers", func, "a non-empty list of layer names", layers)
    return layers, [resolve_layer(model, l, func, sites=True) for l in layers]


def _sample_units(model, layers, units, *, input_size, random_state, allow_fewer, func,
                  size_param: str = "input_size"):
    """:func:`sample_units`, with errors naming ``func`` (the public function the user called)."""
    layers, infos = _resolve_layers(model, layers, func)  # unknown names fail before any forward
    if input_size is None:
        input_size = model_info(model).input_size or 224
    input_size = check_int(input_size, "input_size", func, min_value=1)
    rng = check_random_state(random_state, func)
    if not (isinstance(units, str) and units == "all"):
        check_int(units, "units", func, min_value=1)
    shapes = _layer_shapes(model, layers, input_size, func=func, param=size_param)
    frames = []
    for li in infos:
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


def _channel_units(model, layers, units, *, input_size, random_state, allow_fewer, func,
                   size_param: str = "input_size"):
    """One unit per channel (``row = col = -1``): ``units`` channels sampled per layer, or ``"all"``."""
    layers, infos = _resolve_layers(model, layers, func)
    rng = check_random_state(random_state, func)
    every = isinstance(units, str) and units == "all"
    if not every:
        check_int(units, "units", func, min_value=1)
    shapes = _layer_shapes(model, layers, input_size, func=func, param=size_param)
    frames = []
    for li in infos:
        c = int(shapes[li.alias][0])
        k = c if every else min(int(units), c) if allow_fewer else int(units)
        if k > c:
            raise param_error("units", func, f"<= the number of channels of layer {li.alias!r} ({c})", k,
                              "ask for fewer units, pass units='all' or allow_fewer=True")
        ch = np.sort(rng.choice(c, size=k, replace=False)) if k < c else np.arange(c)
        frames.append(pd.DataFrame({"layer": li.alias, "module": li.module, "kind": li.kind, "depth": li.depth,
                                    "channel": ch.astype(int), "row": -1, "col": -1}))
    return pd.concat(frames, ignore_index=True)


class _ChannelMean:
    """Spatial mean of the chosen channels of a ``(batch, C, H, W)`` output (FC outputs: the features)."""

    def __init__(self, channels, device, act=None):
        self.index = torch.as_tensor(np.array(channels, dtype=np.int64), device=device)
        self.act = act  # an elementwise activation to apply before the mean (a functional 'post' site)

    def __call__(self, o: torch.Tensor) -> torch.Tensor:
        if self.act is not None:
            o = self.act(o.index_select(1, self.index).to(torch.float32))
            return o.mean(dim=(2, 3)) if o.dim() == 4 else o
        if o.dim() == 4:
            o = o.mean(dim=(2, 3))
        return o.index_select(1, self.index)


def _flat_index(table: pd.DataFrame, shape) -> np.ndarray:
    """Flat index of each unit in a layer's output; ValueError for units outside ``shape``."""
    if len(shape) == 3:
        return np.ravel_multi_index((table["channel"].to_numpy(), table["row"].to_numpy(),
                                     table["col"].to_numpy()), shape)
    ch = table["channel"].to_numpy()
    if len(shape) != 1 or ((ch < 0) | (ch >= shape[0])).any():
        raise ValueError(f"channel outside [0, {shape[0] if len(shape) == 1 else '?'}) for a layer of "
                         f"shape {shape}")
    return ch


class _Gather:
    """Read the sampled units ``(batch, k)`` out of a layer's output ``(batch, C, H, W)`` or ``(batch, F)``.

    For a dense output (contiguous or channels-last) the units are read at their memory offsets
    (``b * stride_n + channel * stride_c + row * stride_h + col * stride_w``) from a 1-D view of its
    storage, so the cost is O(batch x k) whatever the layout. CPU convolutions may return channels-last
    tensors, for which ``flatten(1)`` copies the whole activation; advanced indexing and index_select on
    a 2-D strided view take slow generic paths (each can cost as much as a small layer's convolution).
    """

    def __init__(self, pos, device):
        self.pos = tuple(np.asarray(p, dtype=np.int64) for p in pos)
        self.index = tuple(torch.as_tensor(p, device=device) for p in self.pos)
        self._by_strides: dict = {}

    def __call__(self, o: torch.Tensor) -> torch.Tensor:
        if o.dim() == 2:
            return o.index_select(1, self.index[0])
        if o.dim() != 4 or not (o.is_contiguous() or o.is_contiguous(memory_format=torch.channels_last)):
            return o[(slice(None), *self.index)]  # any other layout: correct, slower
        n, strides = o.shape[0], o.stride()
        index = self._by_strides.get((n, strides))
        if index is None:
            lin = sum(p * s for p, s in zip(self.pos, strides[1:]))
            offsets = (np.arange(n, dtype=np.int64)[:, None] * strides[0] + lin[None, :]).ravel()
            index = self._by_strides[(n, strides)] = torch.as_tensor(offsets, device=o.device)
        storage = torch.as_strided(o, (o.numel(),), (1,), o.storage_offset())
        return storage.index_select(0, index).view(n, -1)


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
           allow_fewer: bool = False, reduce: str | None = None) -> xr.DataArray:
    """Record the responses of sampled single units to a stimulus set.

    Parameters
    ----------
    model : nn.Module
    stimuli : StimulusSet
        Streamed in batches of ``batch_size`` (only one batch of images is in memory at a time).
    layers : list of str, optional
        Call sites; default all conv and FC layers. A site is named by an alias (``conv1_1``,
        ``fc6``) or dotted module name; the dotted name of a block (``layer3``, ``layer3.1``) records
        its output; ``"<name>:k"`` records the k-th call (0-based) of a module run several times per
        forward pass (``layer3.1.relu:1``: the second call of a ResNet block's shared ReLU, the
        block output). A module that runs several times must be named with a call index.
    units : int, "all" or DataFrame
        Units per layer, or a unit table from :func:`sample_units` / a previous recording's
        ``unit`` coordinates (to record the same units on another network).
    site : {"pre", "post"}
        ``"pre"``: output of the conv/linear module (at the named call), before any batch norm or
        activation. ``"post"``: output of the activation applied to it, found in the graph traced by
        :func:`torch.fx.symbolic_trace` through batch norm, dropout and residual sums: a module
        (any activation type, at the right call of a shared one) or an elementwise function written
        in ``forward`` (``F.relu``, ``torch.relu``: applied to the sampled units of its input).
        For a conv whose output is summed with a skip connection before the activation (ResNet's
        last conv of a block) that is the activation after the sum. The layer's own output if no
        activation follows (``fc8``; block outputs). Models that cannot be traced use the activation
        module after the layer in registration order, checked to run once. The call site actually
        read is the ``call_site`` coordinate. In-place activations cannot corrupt ``pre`` values:
        sampled units are copied in the hook.
    random_state : int or Generator, default 0
        Seed of the unit sampling.
    batch_size : int
    device : str or torch.device, optional
        Where to run; default the model's device. The model's device and mode are restored. A device
        this machine lacks (``"cuda"`` without a GPU) or an unknown name is refused.
    progress : bool
        Show a tqdm progress bar.
    allow_fewer : bool
        Record all units of layers smaller than ``units`` instead of raising.
    reduce : {None, "channel_mean"}, default None
        ``"channel_mean"``: a unit is a whole channel, its response the spatial mean of the channel's
        map (FC layers: the feature itself); ``units`` then counts channels per layer (or a unit
        table whose ``channel`` column is used) and ``row = col = -1``.

    Returns
    -------
    xarray.DataArray, dims ("stimulus", "unit"), float32
        Unit coordinates layer, module, kind, depth, channel, row, col, site, call_site (the module
        call read, e.g. ``layer1.0.relu:1`` or ``relu(block.bn1)``); stimulus coordinates
        label, class_name, source (and any other stimulus columns); provenance in ``attrs``.

    Raises
    ------
    NetphysError
        Unknown layer (lists the valid ones), a module that runs several times named without a call
        index (or a call index it does not reach), a functional activation no hook can read
        (``site="post"``), more units than a layer has, batch_size <= 0,
        unknown site, an unavailable device, images of the wrong size for the model, or NaN/inf
        activations.

    Notes
    -----
    Stimulus size: a model with trained weights whose input size is known
    (``model_info(model).input_size``, e.g. 64 px for ``netphys_vgg16``) only takes stimuli of that
    size (another size would silently give the responses at another scale); random networks and
    models of unknown input size take any size their forward pass accepts.
    """
    from tqdm.auto import tqdm

    func = "record"
    stimuli = as_stimulus_set(stimuli, model=model, func=func)  # tensors, uint8 arrays, DataLoaders
    if not isinstance(stimuli, StimulusSet):
        raise param_error("stimuli", func, "a netphys StimulusSet", type(stimuli).__name__,
                          "build one with StimulusSet.from_folder or StimulusSet.from_arrays")
    batch_size = check_int(batch_size, "batch_size", func, min_value=1)
    check_choice(site, "site", func, ("pre", "post"))
    check_choice(reduce, "reduce", func, (None, "channel_mean"))
    if len(stimuli) == 0:
        raise param_error("stimuli", func, "a non-empty StimulusSet", "0 stimuli")
    device = check_device(device, func)
    run_device = device if device is not None else _model_device(model)
    _check_stimulus_size(model, stimuli, func)
    if isinstance(units, pd.DataFrame):
        table = units.reset_index(drop=True)
        missing = [c for c in ("layer", "channel", "row", "col") if c not in table.columns]
        if missing:
            raise param_error("units", func, "a unit table with columns layer, channel, row, col",
                              f"a DataFrame missing {missing}")
        layers = list(dict.fromkeys(table["layer"]))
        infos = {l: resolve_layer(model, l, func, sites=True) for l in layers}
        table = table.assign(module=[infos[l].module for l in table["layer"]],
                             kind=[infos[l].kind for l in table["layer"]],
                             depth=[infos[l].depth for l in table["layer"]])
        if reduce == "channel_mean":
            table = table.assign(row=-1, col=-1)
        seed_note = "from unit table"
    else:
        sampler = _channel_units if reduce == "channel_mean" else _sample_units
        table = sampler(model, layers, units, input_size=stimuli.size, random_state=random_state,
                        allow_fewer=allow_fewer, func=func, size_param="stimuli")
        layers = list(dict.fromkeys(table["layer"]))
        infos = {l: resolve_layer(model, l, func, sites=True) for l in layers}
        seed_note = (int(random_state) if isinstance(random_state, (int, np.integer))
                     and not isinstance(random_state, bool) else "generator")
    # the call site each layer is read at: its own output ('pre') or its activation from the traced graph
    read_at: dict = {}
    for l in layers:
        li = infos[l]
        target = li.pre
        if site == "post":
            why = post_error(model, li)
            if why:
                raise param_error("site", func, f"a site that can be read for layer {l!r}", site,
                                  f"{why}; record site='pre', or make the activation a module")
            if li.post is None:
                log.info("layer %s has no activation after it; site='post' records its output", l)
            else:
                target = li.post
        read_at[l] = target
    probe_sites = {infos[l].pre: l for l in layers}
    probe_sites.update({st: l for l, st in read_at.items()})
    site_param = {st: "site" for l, st in read_at.items() if st != infos[l].pre}
    probed = _probe(model, probe_sites, stimuli.size, device=run_device, func=func, param="stimuli",
                    site_param=site_param)
    shapes = {l: probed[infos[l].pre] for l in layers}
    for l, st in read_at.items():
        if probed[st] != shapes[l]:
            raise param_error("site", func, f"a site with the shape of layer {l!r} ({shapes[l]})", site,
                              f"its activation {str(st)!r} outputs shape {probed[st]}; record site='pre'")
    # one read per layer: (rows of the unit table, the call site, a copying gather); see Capture
    rows_of: dict = {}
    reads: dict = {}
    for l in layers:
        rows = np.flatnonzero(table["layer"].to_numpy() == l)
        sub = table.iloc[rows]
        shp = shapes[l]
        if reduce == "channel_mean":
            ch = sub["channel"].to_numpy()
            if ((ch < 0) | (ch >= shp[0])).any():
                raise param_error("units", func, f"channels inside layer {l!r} of shape {shp}", "out-of-range unit")
            gather = _ChannelMean(ch, run_device, act=read_at[l].fn)
            st = CallSite(read_at[l].module, read_at[l].call)  # the channel mean applies the activation
        else:
            try:
                flat = _flat_index(sub, shp)
            except ValueError as exc:
                raise param_error("units", func, f"units inside layer {l!r} of shape {shp}", "out-of-range unit",
                                  str(exc)) from None
            gather = _Gather(np.unravel_index(np.asarray(flat, dtype=np.int64), shp), run_device)
            st = read_at[l]
        rows_of[l] = rows
        # gathering copies: a later in-place activation cannot change these values
        reads[l] = (st, site_reader(st, gather, detach=True))
    n, u = len(stimuli), len(table)
    out = np.empty((n, u), dtype=np.float32)
    cols = np.concatenate([rows_of[l] for l in layers])
    with restored(model, device=run_device), torch.no_grad():
        bar = tqdm(total=n, desc=f"record {model_info(model).name}", unit="img", disable=not progress)
        try:
            with Capture(model, reads) as capture:
                for idx, x in stimuli.batches(batch_size, device=run_device):
                    got = capture(x)
                    # one device -> host copy per batch (not one per layer: each copy syncs a GPU)
                    vals = torch.cat([got[l] for l in layers], dim=1).cpu().numpy()
                    out[np.ix_(idx, cols)] = vals
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
    read = {l: str(st) for l, st in read_at.items()}
    coords["call_site"] = ("unit", np.array([read[l] for l in table["layer"]], dtype=str))
    for c in stimuli.coords.columns:  # a stimulus column must not overwrite a unit coordinate
        name = f"stimulus_{c}" if c in coords or c in ("unit", "stimulus") else c
        coords[name] = ("stimulus", stimuli.coords[c].to_numpy())
    coords["stimulus"] = np.arange(n)
    coords["unit"] = np.arange(u)
    config = {"layers": layers, "units": units if not isinstance(units, pd.DataFrame) else "unit table",
              "site": site, "random_state": seed_note, "batch_size": batch_size, "allow_fewer": allow_fewer,
              "reduce": reduce or "none"}
    attrs = provenance(model, site=site, seed=seed_note, batch_size=batch_size,
                       stimuli=stimuli.to_dict(), layers=layers, config=config, reduce=reduce or "none")
    da = xr.DataArray(out, dims=("stimulus", "unit"), coords=coords, name="activation", attrs=attrs)
    return da


def _check_stimulus_size(model: nn.Module, stimuli: StimulusSet, func: str) -> None:
    """Refuse stimuli of another size than a trained model's known input size."""
    info = model_info(model)
    known = int(info.input_size or 0)
    if not known or stimuli.size == known or str(info.weights).startswith("random("):
        return
    raise param_error("stimuli", func, f"images at the model's input size ({known}x{known} px for "
                      f"{info.name!r} with weights {info.weights})", f"{stimuli.size}x{stimuli.size} px images",
                      f"build the set with preprocess=Preprocess(resize={known}, crop={known}) (or "
                      "stimuli.with_preprocess(model_info(model).preprocess) for images read from files)")


def unit_table(recording: xr.DataArray) -> pd.DataFrame:
    """The unit table of a recording (to record the same units on another network)."""
    return pd.DataFrame({c: recording.coords[c].values for c in UNIT_COLUMNS if c in recording.coords})
