"""`StimulusSet`: images plus per-stimulus coordinates, streamed to the network in batches."""
from __future__ import annotations

import io
import logging
import os
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from .._random import check_random_state
from .._validation import NetphysError, check_choice, check_device, check_int, param_error
from .preprocess import Preprocess, _resolve_preprocess

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: What to do with an image file that cannot be decoded (unreadable or truncated).
ON_ERROR = ("raise", "skip", "grey")
_ON_ERROR_FIX = ("pass on_error='skip' to leave such files out of the set, or on_error='grey' to replace "
                 "them by a mid-grey image (both are listed in the set's provenance)")


def _unreadable_error(src, exc, func: str) -> NetphysError:
    first = (str(exc).strip().splitlines() or [""])[0]
    return NetphysError(f"{func} could not decode the image {src!r} ({type(exc).__name__}: {first}); "
                        f"the file is unreadable or truncated; {_ON_ERROR_FIX}")


def _open_rgb(source):
    """Open an image (path, bytes or file object) and convert any mode (L, CMYK, RGBA, P) to RGB."""
    from PIL import Image

    with Image.open(source) as im:
        im.load()
        if im.mode == "RGBA" or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGB", im.size, (255, 255, 255))
            bg.paste(im, mask=im.split()[-1])
            return bg
        return im.convert("RGB")


class StimulusSet:
    """A set of images with per-stimulus coordinates and the preprocessing the model expects.

    Images are held either in memory (a uint8 array, already at the network's geometry) or as a list
    of sources (file paths or members of a zip archive) that are decoded lazily, batch by batch, so
    that memory stays bounded for large sets.

    Parameters
    ----------
    coords : pandas.DataFrame
        One row per stimulus; columns include ``label`` (int, -1 when unknown), ``class_name`` and
        ``source``. Extra columns (e.g. grating ``orientation``, ``phase``, ``sf``) are kept.
    preprocess : Preprocess
    images : ndarray of uint8, shape (n, H, W, 3), optional
        In-memory images at the preprocessed geometry (``preprocess.crop``).
    loader : callable, optional
        ``loader(i) -> PIL.Image`` for lazily decoded images; required when ``images`` is None.
    class_names : sequence of str, optional
        Names of the classes, indexed by label.
    name : str
    attrs : dict, optional
        Provenance (e.g. ``root``); ``skipped`` and ``unreadable`` list the files left out or replaced
        by grey (see ``on_error``).
    on_error : {"raise", "skip", "grey"}, default "raise"
        What happens when a lazily decoded image cannot be read: raise a :class:`NetphysError` naming
        the file, or replace it by a mid-grey image (listed in ``attrs['unreadable']``). ``"skip"`` is
        resolved when the set is built (:meth:`from_folder`, :meth:`from_zip`), so a set made with it
        raises if a file becomes unreadable later.
    """

    def __init__(self, coords: pd.DataFrame, preprocess: Preprocess, *, images: np.ndarray | None = None,
                 loader=None, class_names: Sequence[str] | None = None, name: str = "stimuli",
                 attrs: dict | None = None, on_error: str = "raise"):
        func = "StimulusSet"
        if images is None and loader is None:
            raise NetphysError("StimulusSet needs either in-memory 'images' or a 'loader'")
        preprocess = _resolve_preprocess(preprocess, func, None if images is None else images.shape[1])
        if not isinstance(preprocess, Preprocess):
            raise param_error("preprocess", func, "a netphys Preprocess", preprocess)
        self.on_error = check_choice(on_error, "on_error", func, ON_ERROR)
        self.coords = coords.reset_index(drop=True)
        self.preprocess = preprocess
        self._images = images
        self._loader = loader
        self.class_names = list(class_names) if class_names is not None else []
        self.name = name
        self.attrs = dict(attrs or {})

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_folder(cls, root, *, preprocess: Preprocess | str | None = None, n: int | None = None,
                    n_per_class: int | None = None, random_state=0, name: str | None = None,
                    class_names: dict | None = None, on_error: str = "raise",
                    allow_fewer: bool = False) -> "StimulusSet":
        """Read an image folder in ImageFolder layout (one sub-folder per class).

        Parameters
        ----------
        root : path
            Folder with class sub-folders (sorted names give labels 0..K-1). A folder with images
            but no sub-folders is read as a single unlabelled class.
        preprocess : Preprocess, "imagenet", "caffe" or None
            Defaults to ImageNet normalisation at the size of the first image; a name gives that
            preprocessing at the size of the first image.
        n, n_per_class : int, optional
            Deterministic stratified sub-sample (see :meth:`subsample`).
        random_state : int or Generator, default 0
        class_names : dict, optional
            Maps folder names (e.g. WordNet ids) to readable names; a ``classes.csv`` (``wnid,name``)
            next to or above ``root`` is used when present.
        on_error : {"raise", "skip", "grey"}, default "raise"
            Unreadable or truncated images: ``"raise"`` a :class:`NetphysError` naming the file when it
            is decoded; ``"skip"`` decodes every file now and leaves the bad ones out (listed in
            ``attrs['skipped']``); ``"grey"`` replaces them by a mid-grey image when they are decoded
            (listed in ``attrs['unreadable']``, with an error logged).
        allow_fewer : bool
            Passed to :meth:`subsample`.

        Raises
        ------
        NetphysError
            If the folder does not exist or holds no images, or (``on_error="raise"``) when an image
            cannot be decoded.
        """
        root = Path(root)
        func = "StimulusSet.from_folder"
        check_choice(on_error, "on_error", func, ON_ERROR)
        if not root.is_dir():
            raise param_error("root", func, "an existing folder of images in ImageFolder layout",
                              str(root), "pass the folder that holds one sub-folder per class")
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        rows = []
        if subdirs:
            groups = [(d.name, d) for d in subdirs]
        else:
            groups = [("", root)]
        folder_names = []
        for lab, (cname, d) in enumerate(groups):
            files = sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            folder_names.append(cname)
            for f in files:
                rows.append((lab if cname else -1, cname, str(f)))
        # drop empty classes but keep label numbering contiguous
        if not rows:
            raise param_error("root", func, "a folder containing images (" + ", ".join(IMAGE_EXTENSIONS[:4])
                              + ", ...)", str(root), "check the path; no image files were found in it "
                              "or its sub-folders")
        if len(subdirs) == 1 and any(p.is_dir() for p in subdirs[0].iterdir()):
            log.warning("%s holds a single class folder %r that itself contains sub-folders: every image "
                        "gets one label; did you mean root=%s?", root, subdirs[0].name, subdirs[0])
        coords = pd.DataFrame(rows, columns=["label", "folder", "source"])
        present = sorted(coords["folder"].unique())
        if subdirs:
            remap = {f: i for i, f in enumerate(present)}
            empty = [g for g in folder_names if g not in remap]
            if empty:
                log.warning("class folders without images were ignored: %s", empty)
            coords["label"] = coords["folder"].map(remap).astype(int)
        if class_names is None:
            class_names = _read_classes_csv(root)
        names = [class_names.get(f, f) if class_names else f for f in present]
        coords["class_name"] = [names[l] if l >= 0 else "" for l in coords["label"]]
        attrs = {"root": str(root.resolve())}
        if on_error == "skip":
            coords, attrs["skipped"] = _drop_unreadable(coords, _PathLoader(list(coords["source"])), func)
        preprocess = _default_preprocess(preprocess, coords["source"], _PathLoader(list(coords["source"])),
                                         on_error, func)
        st = cls(coords[["label", "class_name", "source", "folder"]], preprocess,
                 loader=_PathLoader(list(coords["source"])), class_names=names,
                 name=name or root.name, attrs=attrs, on_error="raise" if on_error == "skip" else on_error)
        if n is not None or n_per_class is not None:
            st = st.subsample(n=n, n_per_class=n_per_class, random_state=random_state, allow_fewer=allow_fewer)
        return st

    @classmethod
    def from_zip(cls, path, *, preprocess: Preprocess | str | None = None, name: str | None = None,
                 on_error: str = "raise") -> "StimulusSet":
        """Read images stored in a zip archive as ``<class>/<file>`` members (ImageFolder inside a zip).

        ``preprocess`` defaults to ``Preprocess(resize=64, crop=64)`` (a name, ``"imagenet"`` or
        ``"caffe"``, gives that preprocessing at 64 px); ``on_error`` is as in :meth:`from_folder`.
        """
        path = Path(path)
        check_choice(on_error, "on_error", "StimulusSet.from_zip", ON_ERROR)
        if not zipfile.is_zipfile(path):
            raise param_error("path", "StimulusSet.from_zip", "an existing zip archive of images", str(path),
                              "pass the .zip file that holds <class>/<image> members")
        with zipfile.ZipFile(path) as zf:
            members = sorted(m for m in zf.namelist() if m.lower().endswith(IMAGE_EXTENSIONS))
        if not members:
            raise param_error("path", "StimulusSet.from_zip", "a zip archive containing images", str(path))
        folders = [m.split("/")[-2] if "/" in m else "" for m in members]
        if any(folders) and not all(folders):
            # as from_folder: with class folders present, images outside them belong to no class
            log.warning("%s: %d image(s) outside any class folder were ignored", path,
                        sum(1 for f in folders if not f))
            members = [m for m, f in zip(members, folders) if f]
            folders = [f for f in folders if f]
        present = sorted(set(folders))
        # no class folders at all: one unlabelled class (label -1), as from_folder
        remap = {f: i for i, f in enumerate(present)} if any(folders) else {"": -1}
        names_map = {}
        with zipfile.ZipFile(path) as zf:
            if "classes.csv" in zf.namelist():
                df = pd.read_csv(io.BytesIO(zf.read("classes.csv")))
                names_map = dict(zip(df.iloc[:, 0], df.iloc[:, 1]))
        names = [names_map.get(f, f) for f in present]
        coords = pd.DataFrame({"label": [remap[f] for f in folders],
                               "class_name": [names_map.get(f, f) for f in folders],
                               "source": [f"{path.name}:{m}" for m in members], "folder": folders})
        attrs = {"archive": str(path)}
        if on_error == "skip":
            keep_coords, attrs["skipped"] = _drop_unreadable(coords, _ZipLoader(str(path), members),
                                                             "StimulusSet.from_zip")
            keep = set(keep_coords["source"])
            members = [m for m, src in zip(members, coords["source"]) if src in keep]
            coords = keep_coords
        preprocess = _resolve_preprocess(preprocess, "StimulusSet.from_zip", 64)
        if preprocess is None:
            preprocess = Preprocess(resize=64, crop=64)
        return cls(coords, preprocess, loader=_ZipLoader(str(path), members), class_names=names,
                   name=name or path.stem, attrs=attrs, on_error="raise" if on_error == "skip" else on_error)

    @classmethod
    def from_arrays(cls, images, labels=None, *, class_names: Sequence[str] | None = None,
                    preprocess: Preprocess | str | None = None, coords: dict | pd.DataFrame | None = None,
                    name: str = "arrays") -> "StimulusSet":
        """Build a set from in-memory images.

        Parameters
        ----------
        images : array-like, shape (n, H, W, 3) or (n, H, W) (grayscale) or (n, 3, H, W)
            uint8 in [0, 255] or float in [0, 1]. Square images are required (H == W).
        labels : array-like of int or of str, optional
            Ints in ``[-1, len(class_names) - 1]`` (-1: unlabelled), or class names: with
            ``class_names`` each name is looked up in it, without them the sorted distinct names become
            the classes.
        class_names : sequence of str, optional
            Default: ``"0" .. str(max label)``.
        preprocess : Preprocess, "imagenet", "caffe" or None
            Its crop must equal the image size; a name gives that preprocessing at the image size.
        coords : dict or DataFrame, optional
            Extra per-stimulus columns.

        Raises
        ------
        NetphysError
            Bad image array, labels of the wrong length, labels outside ``class_names`` or not ints
            or names, or a preprocessing of another size.
        """
        func = "StimulusSet.from_arrays"
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        a = np.asarray(images)
        if a.ndim == 3:
            a = np.repeat(a[..., None], 3, axis=-1)
        if a.ndim != 4:
            raise param_error("images", func, "an array of shape (n, H, W, 3), (n, 3, H, W) or (n, H, W)",
                              f"array of shape {a.shape}")
        if a.shape[-1] != 3 and a.shape[1] == 3:
            a = np.transpose(a, (0, 2, 3, 1))
        if a.shape[-1] != 3:
            raise param_error("images", func, "RGB images with 3 channels",
                              f"array of shape {a.shape}", "convert to RGB first")
        if a.shape[0] == 0:
            raise param_error("images", func, "a non-empty array of images", f"array of shape {a.shape}")
        if a.dtype == np.uint8:
            pass
        elif a.dtype.kind == "f":
            if not np.all(np.isfinite(a)):
                raise param_error("images", func, "finite values", "an array containing NaN or inf")
            if a.min() < 0 or a.max() > 1:
                raise param_error("images", func, "float values in [0, 1] or uint8 in [0, 255]",
                                  f"float values in [{a.min():.3g}, {a.max():.3g}]")
            a = np.round(a * 255).astype(np.uint8)
        else:
            raise param_error("images", func, "of dtype uint8 or float", str(a.dtype))
        n, h, w, _ = a.shape
        if h != w:
            raise param_error("images", func, "square (H == W)", f"{h}x{w}", "crop the images first")
        labels, class_names = _check_labels(labels, class_names, n, func)
        df = pd.DataFrame({"label": labels,
                           "class_name": [class_names[l] if l >= 0 else "" for l in labels],
                           "source": [f"{name}[{i}]" for i in range(n)]})
        if coords is not None:
            extra = pd.DataFrame(coords)
            for c in extra.columns:
                df[c] = extra[c].to_numpy()
        preprocess = _resolve_preprocess(preprocess, func, h)
        if preprocess is None:
            preprocess = Preprocess(resize=h, crop=h)
        elif preprocess.crop != h:
            raise param_error("preprocess", func, f"crop == image size ({h})", preprocess.crop,
                              "in-memory images must already be at the network's input size")
        return cls(df, preprocess, images=np.ascontiguousarray(a), class_names=class_names, name=name)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.coords)

    def __repr__(self) -> str:
        k = len(self.class_names)
        return (f"StimulusSet(name={self.name!r}, n={len(self)}, classes={k}, "
                f"size={self.preprocess.crop}, preprocess={self.preprocess.name!r})")

    @property
    def labels(self) -> np.ndarray:
        return self.coords["label"].to_numpy()

    @property
    def size(self) -> int:
        return self.preprocess.crop

    def with_preprocess(self, preprocess: Preprocess) -> "StimulusSet":
        """The same stimuli with another preprocessing (in-memory images must keep their size).

        ``preprocess`` may also be a name (``"imagenet"``, ``"caffe"``), taken at the current size.
        """
        preprocess = _resolve_preprocess(preprocess, "StimulusSet.with_preprocess", self.size)
        if not isinstance(preprocess, Preprocess):
            raise param_error("preprocess", "StimulusSet.with_preprocess", "a netphys Preprocess", preprocess)
        if self._images is not None and preprocess.crop != self._images.shape[1]:
            raise param_error("preprocess", "StimulusSet.with_preprocess",
                              f"crop == {self._images.shape[1]} for in-memory images", preprocess.crop)
        return StimulusSet(self.coords, preprocess, images=self._images, loader=self._loader,
                           class_names=self.class_names, name=self.name, attrs=self.attrs,
                           on_error=self.on_error)

    def take(self, index) -> "StimulusSet":
        """A new set with the stimuli at positions ``index``."""
        index = np.asarray(index, dtype=int)
        coords = self.coords.iloc[index].reset_index(drop=True)
        images = self._images[index] if self._images is not None else None
        loader = self._loader.take(index) if self._loader is not None and images is None else None
        return StimulusSet(coords, self.preprocess, images=images, loader=loader,
                           class_names=self.class_names, name=self.name, attrs=self.attrs,
                           on_error=self.on_error)

    def subsample(self, n: int | None = None, *, n_per_class: int | None = None,
                  random_state=0, allow_fewer: bool = False) -> "StimulusSet":
        """Deterministic stratified sub-sample.

        ``n_per_class`` draws that many images from every class; a class with fewer images raises,
        unless ``allow_fewer`` (then all of it is taken, with a warning). ``n`` draws ``n`` images in
        total, split over classes as evenly as possible (largest remainder by class size). The same
        seed gives the same images; order is sorted by class then by draw.

        Raises
        ------
        NetphysError
            ``n`` outside ``[1, len(self)]``, ``n_per_class < 1``, or ``n_per_class`` larger than the
            smallest class without ``allow_fewer``.
        """
        func = "StimulusSet.subsample"
        rng = check_random_state(random_state, func)
        labels = self.labels
        classes = np.unique(labels)
        if n_per_class is not None:
            n_per_class = check_int(n_per_class, "n_per_class", func, min_value=1)
            smallest = int(min((labels == c).sum() for c in classes))
            if n_per_class > smallest and not allow_fewer:
                raise param_error("n_per_class", func, f"<= the images of the smallest class ({smallest})",
                                  n_per_class, f"use n_per_class <= {smallest} or allow_fewer=True")
            take = {c: n_per_class for c in classes}
        elif n is not None:
            n = check_int(n, "n", func, min_value=1, max_value=len(self))
            counts = np.array([(labels == c).sum() for c in classes])
            base = np.minimum(counts, n // len(classes))
            rest = n - base.sum()
            while rest > 0:
                room = counts - base
                order = np.argsort(-room, kind="stable")
                for j in order:
                    if rest == 0:
                        break
                    if room[j] > 0:
                        base[j] += 1
                        rest -= 1
            take = dict(zip(classes, base))
        else:
            return self
        chosen = []
        for c in classes:
            idx = np.flatnonzero(labels == c)
            k = take[c]
            if k > len(idx):
                log.warning("class %s has only %d images (asked %d); taking all", c, len(idx), k)
                k = len(idx)
            chosen.append(np.sort(rng.choice(idx, size=k, replace=False)))
        return self.take(np.concatenate(chosen))

    def select_diverse(self, model, layer: str | None = None, k: int = 160, *, n_components: int = 300,
                       random_state=0, n_init: int = 10, batch_size: int = 64, device=None,
                       progress: bool = False) -> "StimulusSet":
        """The ``k`` stimuli that best span a network's output space (the paper's *diverseSet*).

        Records every unit of ``layer`` for all stimuli with :func:`netphys.recording.record`, then
        selects with :func:`netphys.stimuli.diverse_subset` (PCA, k-means, the stimulus nearest each
        centre, no stimulus twice).

        Parameters
        ----------
        model : nn.Module
        layer : str, optional
            Layer whose output spans the space (an alias such as ``fc8`` or a dotted module name,
            recorded at ``site="pre"``). Default: the model's last conv / FC layer in depth order
            (:func:`netphys.models.layers.default_layers`), for a classifier its final Linear layer,
            i.e. the output before the softmax (the logits), as in the paper.
        k : int, default 160
            Stimuli to select, in ``[2, len(self)]``.
        n_components, random_state, n_init
            As in :func:`~netphys.stimuli.diverse_subset`.
        batch_size : int, default 64
        device : str or torch.device, optional
            Where the model runs (default its own device; restored afterwards).
        progress : bool
            Show a progress bar while recording.

        Returns
        -------
        StimulusSet
            The ``k`` selected stimuli, in cluster order, with the columns ``diverse_cluster``,
            ``diverse_pool_index`` (position in this set), ``diverse_distance`` (to the centre, in
            PCA space) and ``diverse_cluster_size``. ``attrs['diverse_selection']`` holds the
            Dataset of :func:`~netphys.stimuli.diverse_subset` (with ``model`` and ``layer`` in its
            attrs); ``attrs`` also gets the scalar settings ``diverse_layer``, ``diverse_k``,
            ``diverse_n_components`` and ``diverse_random_state``.

        Raises
        ------
        NetphysError
            Those of :func:`~netphys.recording.record` (unknown layer, stimuli of the wrong size, bad
            ``batch_size`` or ``device``) and of :func:`~netphys.stimuli.diverse_subset` (``k``
            outside ``[2, len(self)]``, NaN/inf outputs, ``n_components < 1``).

        References
        ----------
        .. [1] Functional segregation of inputs in artificial neural networks for vision (under
           review), Methods, "Image dataset" (diverseSet, k = 160).
        """
        # recording and models are floors above stimuli: imported here, at call time, not at module
        # import, so that importing netphys.stimuli never imports them (no import cycle)
        from ..models.layers import default_layers, resolve_layer
        from ..recording import record
        from .selection import diverse_subset

        func = "StimulusSet.select_diverse"
        # check k before the (possibly long) recording
        k = check_int(k, "k", func, min_value=2, max_value=max(2, len(self)))
        if layer is None:
            layers = default_layers(model)
            if not layers:
                raise param_error("layer", func, "the name of the layer whose output to use", None,
                                  "the model has no conv or linear layer to default to; name a module")
            layer = layers[-1]
        resolve_layer(model, layer, func, sites=True)  # an unknown name fails here, naming this method
        rec = record(model, self, [layer], units="all", batch_size=batch_size, device=device,
                     progress=progress)
        sel = diverse_subset(rec, k, n_components=n_components, random_state=random_state, n_init=n_init)
        sel.attrs.update({"model": rec.attrs.get("model", ""), "weights": str(rec.attrs.get("weights", "")),
                          "layer": layer, "stimuli": self.name})
        index = sel["index"].values
        out = self.take(index)
        out.coords = out.coords.assign(diverse_cluster=sel["cluster"].values, diverse_pool_index=index,
                                       diverse_distance=sel["distance"].values,
                                       diverse_cluster_size=sel["cluster_size"].values)
        out.attrs.update({"diverse_selection": sel, "diverse_layer": layer, "diverse_k": k,
                          "diverse_n_components": int(sel.attrs["n_components"]),
                          "diverse_random_state": str(sel.attrs["random_state"])})
        return out

    # ------------------------------------------------------------------ pixels
    def load_images(self, index=None) -> np.ndarray:
        """Images at the network's geometry, (n, H, W, 3) uint8 RGB.

        An unreadable or truncated file raises a :class:`NetphysError` naming it (``on_error="raise"``)
        or, with ``on_error="grey"``, is reported (logged with its path) and replaced by a mid-grey
        image; its source is then listed in ``self.attrs['unreadable']``.
        """
        if index is None:
            index = np.arange(len(self))
        index = np.asarray(index, dtype=int)
        if self._images is not None:
            return self._images[index]
        out = np.empty((len(index), self.size, self.size, 3), dtype=np.uint8)
        for j, i in enumerate(index):
            try:
                out[j] = self.preprocess.geometry(self._loader(int(i)))
            except Exception as exc:  # noqa: BLE001 - raised or reported, not silent
                src = self.coords["source"].iloc[int(i)]
                if self.on_error != "grey":
                    raise _unreadable_error(src, exc, "StimulusSet.load_images") from exc
                log.error("could not read stimulus %d (%s): %s; using a grey image", i, src, exc)
                listed = self.attrs.get("unreadable", [])
                if src not in listed:  # a new list: sets made by take() must not share it
                    self.attrs["unreadable"] = [*listed, src]
                out[j] = 128
        return out

    def tensor(self, index=None, device=None) -> torch.Tensor:
        """Normalised network input for ``index``, (n, 3, H, W) float32 (on ``device``, if given)."""
        device = check_device(device, "StimulusSet.tensor")
        u8 = torch.from_numpy(np.ascontiguousarray(self.load_images(index))).permute(0, 3, 1, 2)
        if device is not None:
            u8 = u8.to(device)
        # contiguous NCHW: a channels-last view (the permuted HWC pixels) sends convolutions down another
        # kernel, whose float32 sums differ in the last bit from the same input passed as a tensor
        return self.preprocess.normalise(u8).contiguous()

    def grayscale(self, index=None) -> np.ndarray:
        """Grayscale images in [0, 1] (ITU-R 601 luma), (n, H, W) float32."""
        a = self.load_images(index).astype(np.float32) / 255.0
        return a @ np.array([0.299, 0.587, 0.114], dtype=np.float32)

    def batches(self, batch_size: int = 64, device=None) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield ``(index, input_tensor)`` batches in order; memory holds one batch at a time."""
        batch_size = check_int(batch_size, "batch_size", "StimulusSet.batches", min_value=1)
        device = check_device(device, "StimulusSet.batches")
        n = len(self)
        for s in range(0, n, batch_size):
            idx = np.arange(s, min(n, s + batch_size))
            yield idx, self.tensor(idx, device=device)

    def to_dict(self) -> dict:
        """Identity of the set for provenance.

        Includes ``on_error`` and the files left out (``skipped``) or replaced by grey
        (``unreadable``, filled as images are loaded), so that reports can list them.
        """
        return {"name": self.name, "n": len(self), "classes": list(self.class_names),
                "preprocess": self.preprocess.to_dict(), "on_error": self.on_error,
                "skipped": list(self.attrs.get("skipped", [])),
                "unreadable": list(self.attrs.get("unreadable", [])),
                **{k: v for k, v in self.attrs.items() if isinstance(v, (str, int, float))}}

    @property
    def input_size(self) -> int:
        """Side of the network input in pixels (``preprocess.crop``; also :attr:`size`)."""
        return self.preprocess.crop


def _check_labels(labels, class_names, n: int, func: str):
    """Labels as ints in ``[-1, K - 1]`` and the class names (string labels are looked up or become
    the classes)."""
    if labels is None:
        labels = np.full(n, -1)
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise param_error("labels", func, f"a 1-D array of {n} ints (one per image)",
                          f"array of shape {labels.shape}")
    if labels.dtype.kind in "USO" and n and all(isinstance(v, str) for v in labels.tolist()):
        names = list(class_names) if class_names is not None else sorted(set(labels.tolist()))
        index = {c: i for i, c in enumerate(names)}
        unknown = sorted(set(labels.tolist()) - set(index))
        if unknown:
            raise param_error("labels", func, f"names in class_names ({names})", unknown[0],
                              "add the class to class_names or pass integer labels")
        return np.array([index[v] for v in labels.tolist()], dtype=int), names
    if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        labels = labels.astype(int)
    if labels.dtype.kind not in "iu":
        raise param_error("labels", func, "ints (class indices, -1 for unlabelled) or class names (str)",
                          labels[:5].tolist())
    labels = labels.astype(int)
    if class_names is None:
        k = labels.max() + 1 if n and labels.max() >= 0 else 0
        class_names = [str(i) for i in range(k)]
    class_names = list(class_names)
    bad = (labels < -1) | (labels >= len(class_names))
    if bad.any():
        raise param_error("labels", func, f"ints in [-1, {len(class_names) - 1}] (one of the "
                          f"{len(class_names)} class_names, or -1 for unlabelled)", int(labels[bad][0]),
                          "pass class_names with a name for every label")
    return labels, class_names


def _drop_unreadable(coords: pd.DataFrame, loader, func: str):
    """Decode every image once; ``(coords without the unreadable ones, their sources)``."""
    bad = []
    for i in range(len(coords)):
        try:
            loader(i)
        except Exception as exc:  # noqa: BLE001 - listed in the provenance, and logged
            log.warning("%s: skipping %s (%s: %s)", func, coords["source"].iloc[i], type(exc).__name__, exc)
            bad.append(i)
    skipped = [str(coords["source"].iloc[i]) for i in bad]
    keep = coords.drop(index=coords.index[bad]).reset_index(drop=True)
    if not len(keep):
        raise param_error("root", func, "a folder or archive with at least one readable image",
                          f"{len(skipped)} unreadable file(s)", "check the files")
    return keep, skipped


def _default_preprocess(preprocess, sources, loader, on_error: str, func: str) -> Preprocess:
    """``preprocess`` (a name is taken at the first image's size), or ImageNet normalisation at the
    size of the first image that can be decoded."""
    if isinstance(preprocess, Preprocess):
        return preprocess
    if preprocess is not None and not (isinstance(preprocess, str)):
        return _resolve_preprocess(preprocess, func)  # raises the templated error
    size = None
    for i, src in enumerate(sources):
        try:
            im = loader(i)
        except Exception as exc:  # noqa: BLE001
            if on_error == "raise":
                raise _unreadable_error(src, exc, func) from exc
            log.warning("could not read %s", src)  # reported again by load_images
            continue
        size = min(im.size)
        break
    if size is None:
        raise param_error("root", func, "a folder containing readable images", f"{len(sources)} unreadable "
                          "file(s)", "check the files, or pass preprocess= explicitly")
    if preprocess is not None:
        return _resolve_preprocess(preprocess, func, size)
    return Preprocess(resize=size, crop=size)


def _read_classes_csv(root: Path) -> dict:
    for cand in (root / "classes.csv", root.parent / "classes.csv"):
        if cand.is_file():
            try:
                df = pd.read_csv(cand)
                return dict(zip(df.iloc[:, 0].astype(str), df.iloc[:, 1].astype(str)))
            except Exception:  # noqa: BLE001
                log.warning("could not read %s", cand)
    return {}


class _PathLoader:
    def __init__(self, paths):
        self.paths = list(paths)

    def __call__(self, i):
        return _open_rgb(self.paths[i])

    def take(self, index):
        return _PathLoader([self.paths[i] for i in index])


class _ZipLoader:
    def __init__(self, archive, members):
        self.archive = archive
        self.members = list(members)
        self._zf = None
        self._pid = None

    def __call__(self, i):
        if self._zf is None or self._pid != os.getpid():
            self._zf = zipfile.ZipFile(self.archive)
            self._pid = os.getpid()
        return _open_rgb(io.BytesIO(self._zf.read(self.members[i])))

    def take(self, index):
        return _ZipLoader(self.archive, [self.members[i] for i in index])

    def __getstate__(self):
        return {"archive": self.archive, "members": self.members, "_zf": None, "_pid": None}
