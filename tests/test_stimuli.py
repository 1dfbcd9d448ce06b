"""StimulusSet: folders, zips, arrays, sub-sampling, preprocessing (unit + integration tier)."""
from __future__ import annotations

import json
import logging
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from netphys._validation import NetphysError
from netphys.stimuli import IMAGENET_MEAN, IMAGENET_STD, Preprocess, StimulusSet, demo_stimuli

from conftest import GREEN, RED

# ----------------------------------------------------------------------------- from_folder


def test_from_folder_labels_and_classes(image_folder, caplog):
    with caplog.at_level(logging.WARNING):
        st = StimulusSet.from_folder(image_folder)
    # the empty class folder is dropped (with a warning) and labels stay contiguous
    assert st.class_names == ["a_cats", "b_dogs"]
    assert "c_empty" in caplog.text
    assert list(st.labels) == [0] * 4 + [1] * 5
    assert len(st) == 9  # notes.txt / readme.txt are not images
    assert set(st.coords.columns) >= {"label", "class_name", "source", "folder"}
    assert (st.coords["class_name"] == np.where(st.labels == 0, "a_cats", "b_dogs")).all()
    # default preprocessing: the size of the (first) image, ImageNet normalisation
    assert st.size == 40
    assert st.preprocess.mean == IMAGENET_MEAN


def test_from_folder_converts_every_mode_to_rgb(image_folder):
    st = StimulusSet.from_folder(image_folder, on_error="grey")
    src = [s.rsplit("/", 1)[-1] for s in st.coords["source"]]
    im = st.load_images()
    assert im.dtype == np.uint8 and im.shape == (9, 40, 40, 3)
    px = dict(zip(src, im[:, 20, 20]))
    np.testing.assert_allclose(px["cat0.jpg"], RED, atol=3)  # JPEG, 48x40 -> centre crop
    np.testing.assert_array_equal(px["gray.png"], [77, 77, 77])  # L -> RGB: equal channels
    np.testing.assert_allclose(px["cmyk.jpg"], [0, 255, 255], atol=3)  # pure cyan in CMYK
    np.testing.assert_array_equal(px["rgba.png"], [255, 255, 255])  # transparent -> white background
    np.testing.assert_array_equal(px["dog0.png"], GREEN)


def test_unreadable_file_is_reported_not_fatal(image_folder, caplog):
    st = StimulusSet.from_folder(image_folder, on_error="grey")
    with caplog.at_level(logging.ERROR):
        im = st.load_images()
    bad = [i for i, s in enumerate(st.coords["source"]) if s.endswith("bad.jpg")]
    assert len(bad) == 1
    assert (im[bad[0]] == 128).all()  # replaced by mid-grey
    assert "bad.jpg" in caplog.text
    assert any(s.endswith("bad.jpg") for s in st.attrs["unreadable"])
    # a second pass does not list the file twice
    st.load_images()
    assert len(st.attrs["unreadable"]) == 1
    assert st.to_dict()["unreadable"] == st.attrs["unreadable"] and st.to_dict()["on_error"] == "grey"


def test_unreadable_first_file_does_not_crash_default_preprocess(tmp_path):
    root = tmp_path / "x"
    (root / "k").mkdir(parents=True)
    (root / "k" / "a_broken.jpg").write_bytes(b"\x00\x01 not an image")
    Image.new("RGB", (24, 24), RED).save(root / "k" / "b_good.png")
    st = StimulusSet.from_folder(root, on_error="grey")
    assert st.size == 24
    assert st.load_images().shape == (2, 24, 24, 3)
    with pytest.raises(NetphysError, match=r"StimulusSet.from_folder could not decode the image '.*a_broken\.jpg'"):
        StimulusSet.from_folder(root)  # the default: the first file decides the size, and it is unreadable


def test_unreadable_files_do_not_crash_recording(image_folder, small_vgg):
    from netphys.recording import record

    st = StimulusSet.from_folder(image_folder, preprocess=Preprocess(resize=32, crop=32), on_error="grey")
    rec = record(small_vgg, st, ["conv1_1"], units=3)
    assert rec.shape == (9, 3) and np.isfinite(rec.values).all()
    assert json.loads(rec.attrs["stimuli"])["unreadable"][0].endswith("bad.jpg")


def _truncated_jpeg_folder(tmp_path):
    """Two good JPEGs and one cut after half of its bytes (PIL: 'image file is truncated')."""
    import io

    root = tmp_path / "trunc"
    (root / "k").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(root / "k" / f"im{i}.jpg")
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buf, format="JPEG")
    (root / "k" / "im1.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return root


def test_truncated_jpeg_raises_by_default(tmp_path, small_vgg):
    from netphys.recording import record

    root = _truncated_jpeg_folder(tmp_path)
    st = StimulusSet.from_folder(root, preprocess=Preprocess(resize=32, crop=32))
    assert st.on_error == "raise" and len(st) == 3
    msg = (r"StimulusSet.load_images could not decode the image '.*im1\.jpg' \(OSError: .*[Tt]runcated.*\); "
           r"the file is unreadable or truncated; pass on_error='skip' .* on_error='grey'")
    with pytest.raises(NetphysError, match=msg):
        st.load_images()
    with pytest.raises(NetphysError, match=msg):
        record(small_vgg, st, ["conv1_1"], units=2)
    assert st.load_images([0, 2]).shape == (2, 32, 32, 3)  # the good ones still load


def test_truncated_jpeg_skip_and_grey_are_listed(tmp_path, small_vgg):
    from netphys.recording import record

    root = _truncated_jpeg_folder(tmp_path)
    skip = StimulusSet.from_folder(root, on_error="skip")
    assert len(skip) == 2 and [s.rsplit("/", 1)[-1] for s in skip.coords["source"]] == ["im0.jpg", "im2.jpg"]
    assert [s.rsplit("/", 1)[-1] for s in skip.attrs["skipped"]] == ["im1.jpg"]
    assert skip.to_dict()["skipped"] == skip.attrs["skipped"] and skip.to_dict()["unreadable"] == []
    assert skip.load_images().shape == (2, 24, 24, 3)
    assert skip.take([1]).attrs["skipped"] == skip.attrs["skipped"]  # provenance survives take()
    grey = StimulusSet.from_folder(root, on_error="grey")
    rec = record(small_vgg, grey.with_preprocess(Preprocess(resize=32, crop=32)), ["conv1_1"], units=2)
    assert rec.shape == (3, 2)
    listed = json.loads(rec.attrs["stimuli"])
    assert [s.rsplit("/", 1)[-1] for s in listed["unreadable"]] == ["im1.jpg"] and listed["on_error"] == "grey"
    assert (grey.load_images([1]) == 128).all()
    # the zip reader takes the same option
    import zipfile

    zpath = tmp_path / "t.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in sorted((root / "k").iterdir()):
            zf.write(f, f"k/{f.name}")
    zskip = StimulusSet.from_zip(zpath, on_error="skip")
    assert len(zskip) == 2 and zskip.attrs["skipped"] == ["t.zip:k/im1.jpg"]
    assert zskip.load_images().shape == (2, 64, 64, 3)
    with pytest.raises(NetphysError, match=r"could not decode the image 't\.zip:k/im1\.jpg'"):
        StimulusSet.from_zip(zpath).load_images()
    with pytest.raises(NetphysError, match=r"the 'on_error' parameter of StimulusSet.from_folder must be one of "
                                           r"'raise', 'skip', 'grey', got 'ignore'"):
        StimulusSet.from_folder(root, on_error="ignore")


def test_flat_folder_is_one_unlabelled_class(flat_folder):
    st = StimulusSet.from_folder(flat_folder)
    assert len(st) == 4
    assert (st.labels == -1).all()


def test_classes_csv_gives_readable_names(image_folder):
    (image_folder / "classes.csv").write_text("wnid,name\na_cats,cat\nb_dogs,dog\n")
    st = StimulusSet.from_folder(image_folder)
    assert st.class_names == ["cat", "dog"]
    assert list(st.coords["class_name"].unique()) == ["cat", "dog"]
    st2 = StimulusSet.from_folder(image_folder, class_names={"a_cats": "kitty"})
    assert st2.class_names == ["kitty", "b_dogs"]


@pytest.mark.parametrize("kind", ["missing", "empty", "no_images"])
def test_from_folder_bad_root(tmp_path, kind):
    root = tmp_path / "root"
    if kind != "missing":
        root.mkdir()
    if kind == "no_images":
        (root / "cls").mkdir()
        (root / "cls" / "a.txt").write_text("text")
        (root / "b.csv").write_text("1,2")
    if kind == "missing":
        match = r"the 'root' parameter of StimulusSet.from_folder must be an existing folder"
    else:
        match = r"the 'root' parameter of StimulusSet.from_folder must be a folder containing images .*no image"
    with pytest.raises(NetphysError, match=match):
        StimulusSet.from_folder(root)


# ----------------------------------------------------------------------------- subsample


def _classes(n_per, size=8):
    imgs = np.zeros((sum(n_per), size, size, 3), np.uint8)
    labels = np.repeat(np.arange(len(n_per)), n_per)
    imgs[..., 0] = np.arange(len(imgs))[:, None, None]  # each image is identifiable
    return StimulusSet.from_arrays(imgs, labels)


def test_subsample_n_per_class_is_stratified_and_seeded():
    st = _classes([10, 10, 10])
    a = st.subsample(n_per_class=4, random_state=0)
    b = st.subsample(n_per_class=4, random_state=0)
    c = st.subsample(n_per_class=4, random_state=1)
    assert np.bincount(a.labels).tolist() == [4, 4, 4]
    assert a.coords["source"].tolist() == b.coords["source"].tolist()
    assert a.coords["source"].tolist() != c.coords["source"].tolist()
    # the images follow their coordinates
    ids = a.load_images()[:, 0, 0, 0]
    assert [f"arrays[{i}]" for i in ids] == a.coords["source"].tolist()
    # drawn without replacement
    assert a.coords["source"].is_unique


def test_subsample_n_total_splits_over_classes():
    st = _classes([10, 10, 3])
    sub = st.subsample(9, random_state=0)
    assert len(sub) == 9
    assert np.bincount(sub.labels).tolist() == [3, 3, 3]
    sub = st.subsample(20, random_state=0)  # the small class cannot give more than 3
    assert len(sub) == 20 and np.bincount(sub.labels).tolist() == [9, 8, 3] or \
        np.bincount(sub.labels).tolist() == [8, 9, 3]
    assert len(st.subsample(len(st))) == len(st)


def test_subsample_small_class_takes_all_with_warning(caplog):
    st = _classes([5, 2])
    with caplog.at_level(logging.WARNING):
        sub = st.subsample(n_per_class=3, allow_fewer=True)
    assert np.bincount(sub.labels).tolist() == [3, 2]
    assert "has only 2 images" in caplog.text
    with pytest.raises(NetphysError, match=r"the 'n_per_class' parameter of StimulusSet.subsample must be "
                                           r"<= the images of the smallest class \(2\), got 3; use "
                                           r"n_per_class <= 2 or allow_fewer=True"):
        st.subsample(n_per_class=3)


def test_from_folder_subsample(image_folder):
    st = StimulusSet.from_folder(image_folder, n_per_class=2, random_state=3)
    assert np.bincount(st.labels).tolist() == [2, 2]
    st2 = StimulusSet.from_folder(image_folder, n=3, random_state=3)
    assert len(st2) == 3


@pytest.mark.parametrize("kw, match", [
    ({"n": 0}, r"the 'n' parameter of StimulusSet.subsample must be an int in \[1, 6\], got 0"),
    ({"n": 7}, r"the 'n' parameter of StimulusSet.subsample must be an int in \[1, 6\], got 7"),
    ({"n_per_class": 0}, r"the 'n_per_class' parameter of StimulusSet.subsample must be an int >= 1, got 0"),
    ({"n": 2, "random_state": -1}, r"the 'random_state' parameter of StimulusSet.subsample"),
])
def test_subsample_errors(kw, match):
    with pytest.raises(NetphysError, match=match):
        _classes([3, 3]).subsample(**kw)


# ----------------------------------------------------------------------------- from_arrays


def test_from_arrays_layouts_agree(random_images):
    hwc = random_images(3, 16)
    ref = StimulusSet.from_arrays(hwc).load_images()
    np.testing.assert_array_equal(ref, hwc)
    chw = np.transpose(hwc, (0, 3, 1, 2))
    np.testing.assert_array_equal(StimulusSet.from_arrays(chw).load_images(), hwc)
    np.testing.assert_array_equal(StimulusSet.from_arrays(torch.from_numpy(chw)).load_images(), hwc)
    flt = hwc.astype(np.float32) / 255
    np.testing.assert_array_equal(StimulusSet.from_arrays(flt).load_images(), hwc)
    gray = hwc[..., 0]
    g = StimulusSet.from_arrays(gray).load_images()
    assert g.shape == hwc.shape and (g == gray[..., None]).all()


def test_from_arrays_labels_and_coords(random_images):
    st = StimulusSet.from_arrays(random_images(3, 8), [1, 0, 1], class_names=["a", "b"],
                                 coords={"orientation": [0.0, 45.0, 90.0]})
    assert st.coords["class_name"].tolist() == ["b", "a", "b"]
    assert st.coords["orientation"].tolist() == [0.0, 45.0, 90.0]
    assert (StimulusSet.from_arrays(random_images(2, 8)).labels == -1).all()


@pytest.mark.parametrize("images, kw, match", [
    (np.zeros((2, 8), np.uint8), {}, r"the 'images' parameter of StimulusSet.from_arrays must be an array "
     r"of shape \(n, H, W, 3\), \(n, 3, H, W\) or \(n, H, W\), got 'array of shape \(2, 8\)'"),
    (np.zeros((2, 8, 8, 4), np.uint8), {}, r"'images' parameter .* must be RGB images with 3 channels, "
     r"got 'array of shape \(2, 8, 8, 4\)'; convert to RGB first"),
    (np.zeros((0, 8, 8, 3), np.uint8), {}, r"'images' parameter .* must be a non-empty array"),
    (np.zeros((2, 8, 6, 3), np.uint8), {}, r"'images' parameter .* must be square \(H == W\), got '8x6'; "
     r"crop the images first"),
    (np.zeros((2, 8, 8, 3), np.int64), {}, r"'images' parameter .* must be of dtype uint8 or float, got 'int64'"),
    (np.full((2, 8, 8, 3), 2.0), {}, r"'images' parameter .* must be float values in \[0, 1\] or uint8"),
    (np.full((2, 8, 8, 3), np.nan), {}, r"'images' parameter .* must be finite values"),
    (np.zeros((2, 8, 8, 3), np.uint8), {"labels": [0, 1, 1]}, r"the 'labels' parameter of "
     r"StimulusSet.from_arrays must be a 1-D array of 2 ints"),
    (np.zeros((2, 8, 8, 3), np.uint8), {"preprocess": Preprocess(resize=16, crop=16)},
     r"the 'preprocess' parameter .* must be crop == image size \(8\), got 16"),
])
def test_from_arrays_errors(images, kw, match):
    with pytest.raises(NetphysError, match=match):
        StimulusSet.from_arrays(images, **kw)


# ----------------------------------------------------------------------------- pixels and preprocessing


def test_normalisation_known_answer():
    img = np.zeros((1, 4, 4, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 0, 128, 255
    x = StimulusSet.from_arrays(img).tensor()
    assert x.shape == (1, 3, 4, 4) and x.dtype == torch.float32
    want = [(v / 255 - m) / s for v, m, s in zip((0, 128, 255), IMAGENET_MEAN, IMAGENET_STD)]
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), want, rtol=1e-6)
    # Caffe style: BGR order, 0-255 scale, minus the BGR mean
    pre = Preprocess.caffe(input_size=4)
    with pytest.warns(DeprecationWarning, match="'size' keyword of Preprocess.caffe is deprecated"):
        assert Preprocess.caffe(size=4) == pre
    with pytest.warns(DeprecationWarning, match="Preprocess.imagenet"):
        assert Preprocess.imagenet(size=32) == Preprocess.imagenet(32)
    xc = StimulusSet.from_arrays(img, preprocess=pre).tensor()
    np.testing.assert_allclose(xc[0, :, 0, 0].numpy(),
                               [255 - 104.00699, 128 - 116.66877, 0 - 122.67892], rtol=1e-5)


def test_grayscale_is_itu_601_luma():
    img = np.zeros((3, 2, 2, 3), np.uint8)
    img[0, ..., 0] = 255
    img[1, ..., 1] = 255
    img[2] = 255
    g = StimulusSet.from_arrays(img).grayscale()
    assert g.shape == (3, 2, 2) and g.dtype == np.float32
    np.testing.assert_allclose(g[:, 0, 0], [0.299, 0.587, 1.0], rtol=1e-6)


def test_geometry_resize_shorter_side_then_centre_crop():
    # 80 x 40 image: red | green | blue columns of 20 | 40 | 20 px
    a = np.zeros((40, 80, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:60] = (0, 255, 0)
    a[:, 60:] = (0, 0, 255)
    out = Preprocess(resize=20, crop=20).geometry(Image.fromarray(a))
    assert out.shape == (20, 20, 3)
    # shorter side 40 -> 20, width 80 -> 40; the central 20 columns are green
    np.testing.assert_array_equal(out[10, 2:18], np.tile([0, 255, 0], (16, 1)))


@pytest.mark.parametrize("size", [(224, 224), (300, 250)])
def test_imagenet_preprocess_matches_torchvision(size):
    """Resize(256) + CenterCrop(224) as torchvision's ImageNet evaluation pipeline (PIL backend)."""
    from torchvision import transforms

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    ours = Preprocess.imagenet(224).geometry(im)
    ref = np.asarray(transforms.CenterCrop(224)(transforms.Resize(256)(im)))
    assert ours.shape == ref.shape == (224, 224, 3)
    if size[0] == size[1]:
        np.testing.assert_array_equal(ours, ref)
    else:  # 300x250 -> 307x256; torchvision's crop offset is round(41.5) = 42, netphys's (307-224)//2 = 41
        np.testing.assert_array_equal(ours[:, 1:], ref[:, :-1])


def test_batches_stream_in_order(random_images):
    st = StimulusSet.from_arrays(random_images(7, 8))
    got = list(st.batches(3))
    assert [len(i) for i, _ in got] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([i for i, _ in got]), np.arange(7))
    torch.testing.assert_close(torch.cat([x for _, x in got]), st.tensor())
    with pytest.raises(NetphysError, match=r"the 'batch_size' parameter of StimulusSet.batches must be an "
                       r"int >= 1, got 0"):
        next(st.batches(0))


def test_preprocessing_is_recorded(random_images):
    pre = Preprocess(resize=8, crop=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), name="custom")
    st = StimulusSet.from_arrays(random_images(2, 8), preprocess=pre)
    d = st.to_dict()
    assert d["preprocess"] == {"resize": 8, "crop": 8, "mean": [0.5] * 3, "std": [0.25] * 3,
                               "scale": 1.0, "bgr": False, "name": "custom"}
    assert d["n"] == 2
    assert "custom" in repr(st)


def test_take_and_with_preprocess(image_folder):
    st = StimulusSet.from_folder(image_folder, preprocess=Preprocess(resize=20, crop=20))
    sub = st.take([6, 0])
    assert sub.coords["source"].tolist() == [st.coords["source"][6], st.coords["source"][0]]
    np.testing.assert_array_equal(sub.load_images(), st.load_images([6, 0]))
    big = st.with_preprocess(Preprocess(resize=32, crop=32))
    assert big.load_images([0]).shape == (1, 32, 32, 3)
    mem = StimulusSet.from_arrays(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(NetphysError, match=r"the 'preprocess' parameter of StimulusSet.with_preprocess"):
        mem.with_preprocess(Preprocess(resize=16, crop=16))


# ----------------------------------------------------------------------------- zip and the shipped demo set


def test_from_zip(tmp_path, image_folder):
    z = tmp_path / "set.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(image_folder.rglob("*.png")):
            zf.write(p, f"val/{p.parent.name}/{p.name}")
        zf.writestr("classes.csv", "wnid,name\na_cats,cat\nb_dogs,dog\n")
    st = StimulusSet.from_zip(z, preprocess=Preprocess(resize=16, crop=16))
    assert len(st) == 4 and st.class_names == ["cat", "dog"]
    assert st.labels.tolist() == [0, 1, 1, 1]
    im = st.load_images()
    np.testing.assert_array_equal(im[0, 8, 8], [77, 77, 77])
    np.testing.assert_array_equal(im[3, 8, 8], [255, 255, 255])


def test_from_zip_top_level_images_like_from_folder(tmp_path, image_folder, caplog):
    pngs = sorted(image_folder.rglob("*.png"))
    flat = tmp_path / "flat.zip"                  # no class folders: one unlabelled class
    with zipfile.ZipFile(flat, "w") as zf:
        for i, p in enumerate(pngs):
            zf.write(p, f"img{i}.png")
    st = StimulusSet.from_zip(flat, preprocess=Preprocess(resize=16, crop=16))
    assert st.labels.tolist() == [-1] * len(pngs) and set(st.coords["class_name"]) == {""}
    mixed = tmp_path / "mixed.zip"                # stray top-level images are ignored, with a warning
    with zipfile.ZipFile(mixed, "w") as zf:
        for p in pngs:
            zf.write(p, f"{p.parent.name}/{p.name}")
        zf.write(pngs[0], "stray.png")
    with caplog.at_level("WARNING"):
        st = StimulusSet.from_zip(mixed, preprocess=Preprocess(resize=16, crop=16))
    assert len(st) == len(pngs) and st.labels.min() == 0 and "outside any class folder" in caplog.text


@pytest.mark.parametrize("kind", ["missing", "no_images"])
def test_from_zip_errors(tmp_path, kind):
    z = tmp_path / "set.zip"
    if kind == "no_images":
        with zipfile.ZipFile(z, "w") as zf:
            zf.writestr("a/readme.txt", "x")
    with pytest.raises(NetphysError, match=r"the 'path' parameter of StimulusSet.from_zip must be "):
        StimulusSet.from_zip(z)


def test_demo_stimuli():
    st = demo_stimuli()
    assert len(st) == 1000 and len(st.class_names) == 10
    assert np.bincount(st.labels).tolist() == [100] * 10
    im = st.load_images([0, 999])
    assert im.shape == (2, 64, 64, 3) and im.std() > 5
    assert "ImageNet" in st.attrs["attribution"]


@pytest.mark.shared
def test_shared_imagenette_folder(shared_data):
    root = shared_data / "imagenette-64" / "val"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    st = StimulusSet.from_folder(root, n_per_class=2, random_state=0)
    assert len(st) == 20 and len(st.class_names) == 10
    assert "tench" in [c.lower() for c in st.class_names]  # classes.csv one level up
    im = st.load_images()
    assert im.shape == (20, 64, 64, 3)
