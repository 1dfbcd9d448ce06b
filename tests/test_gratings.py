"""Gratings: the formula of Ukita (2019, eq. 1), orientation/phase conventions, grids, StimulusSet."""
import numpy as np
import pytest

from netphys.stimuli import Preprocess, StimulusSet
from netphys.stimuli.gratings import (GratingGrid, grating_images, gratings, k0_to_sf, paper_grid,
                                      sf_to_k0)


def one(theta, tau, sf, size=32, contrast=1.0):
    return grating_images([theta], [tau], [sf], size, contrast)[0, 0, 0]


def test_matches_formula_exactly():
    size, theta, tau, sf, c = 17, 37.0, 61.0, 3.3, 0.7
    img = one(theta, tau, sf, size, c)
    x, y = np.mgrid[0:size, 0:size].astype(float)
    x0 = y0 = (size - 1) / 2
    k0 = 2 * np.pi * sf / size
    th, ta = np.deg2rad(theta), np.deg2rad(tau)
    yp = -(x - x0) * np.sin(th) + (y - y0) * np.cos(th)
    np.testing.assert_allclose(img, 0.5 + 0.5 * c * np.cos(k0 * yp + ta), atol=1e-12)


def test_shape_range_and_mean():
    imgs = grating_images(np.arange(0, 180, 15), [0, 90, 180, 270], [1, 4, 16], 32)
    assert imgs.shape == (12, 4, 3, 32, 32)
    assert imgs.min() >= 0 and imgs.max() <= 1
    # mean luminance 0.5 exactly, pixel by pixel, over the 4 phases
    # (cos + cos(. + 90) + cos(. + 180) + cos(. + 270) = 0)
    np.testing.assert_allclose(imgs.mean(axis=1), 0.5, atol=1e-12)
    assert imgs[0, 0, 1].max() > 0.96 and imgs[0, 0, 1].min() < 0.04  # samples of a full cycle
    # integer cycles at theta = 0: the image mean is exactly 0.5
    np.testing.assert_allclose(imgs[0, :, :].mean(axis=(-2, -1)), 0.5, atol=1e-12)
    low = grating_images([30], [0], [4], 32, contrast=0.25)
    assert low.min() >= 0.375 - 1e-12 and low.max() <= 0.625 + 1e-12


@pytest.mark.parametrize("theta,sf,peak", [
    (0.0, 8.0, (0, 8)),          # wave vector along columns -> vertical stripes
    (90.0, 8.0, (8, 0)),         # along rows -> horizontal stripes
    (45.0, 8 * np.sqrt(2), (8, -8)),
    (135.0, 8 * np.sqrt(2), (8, 8)),
    (np.rad2deg(np.arctan2(4, 8)), np.hypot(4, 8), (4, -8)),
])
def test_fft_peak_at_k0_and_theta(theta, sf, peak):
    size = 64
    img = one(theta, 0.0, sf, size) - 0.5
    power = np.abs(np.fft.fft2(img)) ** 2
    f = np.fft.fftfreq(size, 1 / size)  # cycles per image
    i, j = np.unravel_index(np.argmax(power), power.shape)
    got = np.array([f[i], f[j]])
    # the spectrum of a real image is symmetric: the peak is at +-(f_row, f_col)
    assert np.allclose(got, peak) or np.allclose(-got, peak)
    # wave vector (rows, cols) = sf * (-sin theta, cos theta): radius = sf, angle = theta
    assert np.hypot(*got) == pytest.approx(sf)
    ang = np.rad2deg(np.arctan2(-got[0], got[1])) % 180
    assert ang == pytest.approx(theta % 180, abs=1e-9)


def test_stripe_directions_on_screen():
    v = one(0, 0, 5, 33)
    assert np.allclose(v, v[:1, :])  # theta=0: every row identical -> vertical stripes
    h = one(90, 0, 5, 33)
    assert np.allclose(h, h[:, :1])  # theta=90: every column identical -> horizontal stripes
    d = one(45, 0, 5, 33)
    assert np.allclose(d[1:, 1:], d[:-1, :-1])  # constant along the main diagonal
    a = one(135, 0, 5, 33)
    assert np.allclose(a[:-1, 1:], a[1:, :-1])  # constant along the anti-diagonal


def test_phase_moves_the_pattern():
    size, sf = 32, 4  # k0 = pi/4 rad/px = 45 deg per pixel
    g0 = one(0, 0, sf, size)
    g45 = one(0, 45, sf, size)
    np.testing.assert_allclose(g45[:, :-1], g0[:, 1:], atol=1e-12)  # one pixel along the columns
    np.testing.assert_allclose(one(0, 180, sf, size), 1 - g0, atol=1e-12)  # contrast reversal
    assert not np.allclose(one(0, 90, sf, size), g0)
    # phase is defined at the centre: tau = 0 puts the bright crest through the centre
    c = one(60, 0, 3, 33)
    assert c[16, 16] == pytest.approx(1.0)
    assert one(60, 180, 3, 33)[16, 16] == pytest.approx(0.0)


def test_orientation_is_180_periodic_up_to_phase():
    np.testing.assert_allclose(one(200, 0, 3), one(20, 0, 3), atol=1e-12)


def test_sf_units_conversion():
    assert sf_to_k0(8, 32) == pytest.approx(np.pi / 2)
    assert k0_to_sf(np.pi, 64) == pytest.approx(32)


def test_paper_grids():
    small, big = paper_grid("small"), paper_grid("imagenet")
    assert small.shape == (12, 4, 9) and small.n_stimuli == 432
    assert big.shape == (12, 4, 57) and big.n_stimuli == 2736
    np.testing.assert_allclose(small.orientations, np.arange(0, 180, 15))
    assert small.phases == (0.0, 90.0, 180.0, 270.0)
    # reference code: k0 = s * pi / (size / 2 + 4), s = 1..n
    np.testing.assert_allclose(small.k0(32), np.arange(1, 10) * np.pi / 20)
    np.testing.assert_allclose(small.sfs, 0.8 * np.arange(1, 10))
    np.testing.assert_allclose(big.k0(224), np.arange(1, 58) * np.pi / 116)
    assert max(big.k0(224)) < np.pi / 2 and max(small.k0(32)) < np.pi / 2
    np.testing.assert_allclose(paper_grid("small", size=64).k0(64), np.arange(1, 10) * np.pi / 36)


def test_gratings_stimulus_set():
    st = gratings(32)
    assert isinstance(st, StimulusSet) and len(st) == 432 and st.size == 32
    co = st.coords
    for col in ("orientation", "phase", "sf", "contrast"):
        assert col in co.columns
    assert co[["orientation", "phase", "sf"]].drop_duplicates().shape[0] == 432
    assert sorted(co.orientation.unique()) == list(np.arange(0, 180, 15.0))
    assert sorted(co.phase.unique()) == [0.0, 90.0, 180.0, 270.0]
    np.testing.assert_allclose(sorted(co.sf.unique()), paper_grid("small").sfs)
    assert st.attrs["sf_units"] == "cycles/image"
    # pixels: RGB replicas of the formula, quantised to uint8
    imgs = st.load_images()
    assert imgs.dtype == np.uint8 and imgs.shape == (432, 32, 32, 3)
    assert np.array_equal(imgs[..., 0], imgs[..., 1]) and np.array_equal(imgs[..., 0], imgs[..., 2])
    for i in (0, 57, 431):
        r = co.iloc[i]
        ref = one(r.orientation, r.phase, r.sf, 32, r.contrast)
        assert np.abs(imgs[i, ..., 0] / 255.0 - ref).max() <= 0.5 / 255 + 1e-9
    x = st.tensor([0, 1])
    assert tuple(x.shape) == (2, 3, 32, 32)


def test_gratings_custom_grid_contrasts_and_preprocess():
    grid = {"orientations": [0, 90], "phases": [0, 180], "sfs": [2, 4]}
    st = gratings(224, grid=grid, contrast=[0.5, 1.0], preprocess=Preprocess.imagenet(224))
    assert len(st) == 16 and st.size == 224
    assert sorted(st.coords.contrast.unique()) == [0.5, 1.0]
    half = st.load_images(np.flatnonzero(st.coords.contrast == 0.5))
    assert half.min() >= 63 and half.max() <= 192
    st2 = gratings("small", grid=GratingGrid([0, 45], [0], [3], name="tiny"))
    assert len(st2) == 2 and st2.attrs["grid"] == "tiny"
    assert len(gratings(16, grid="small")) == 432


@pytest.mark.parametrize("kwargs,match", [
    ({"size": 1}, r"the 'size' parameter of grating_images must be an int >= 2, got 1"),
    ({"sfs": [17]}, r"the 'sfs' parameter of grating_images must be spatial frequencies in cycles "
                    r"per image <= 16"),
    ({"sfs": [-1]}, r"'sfs' parameter of grating_images must be spatial frequencies .* >= 0"),
    ({"orientations": [0, np.nan]}, r"'orientations' .* must be finite"),
    ({"phases": []}, r"'phases' .* must be a non-empty 1-D sequence"),
    ({"orientations": [0, 0]}, r"'orientations' .* must be distinct"),
    ({"contrast": 1.5}, r"the 'contrast' parameter of grating_images must be a number in \[0, 1\]"),
])
def test_grating_images_errors(kwargs, match):
    args = {"orientations": [0], "phases": [0], "sfs": [2], "size": 32, **kwargs}
    with pytest.raises(ValueError, match=match):
        grating_images(**args)


def test_gratings_errors():
    with pytest.raises(ValueError, match=r"'kind' parameter of paper_grid must be one of 'small', "
                                         r"'imagenet', got 'cifar'"):
        paper_grid("cifar")
    with pytest.raises(ValueError, match=r"'input_size' parameter of gratings must be one of"):
        gratings("huge")
    with pytest.raises(ValueError, match=r"'grid' parameter of gratings must be spatial frequencies "
                                         r"<= 8 cycles per image"):
        gratings(16, grid={"orientations": [0], "phases": [0], "sfs": [9]})
    with pytest.raises(ValueError, match=r"'grid' parameter of gratings must be a mapping with keys"):
        gratings(32, grid={"orientations": [0]})
    with pytest.raises(ValueError, match=r"'preprocess' parameter of gratings must be a Preprocess "
                                         r"with crop == input_size \(32\), got 64"):
        gratings(32, grid={"orientations": [0], "phases": [0], "sfs": [2]},
                 preprocess=Preprocess(resize=64, crop=64))


def test_model_size_is_a_deprecated_alias_of_input_size():
    a = gratings(32, grid="small")
    with pytest.warns(DeprecationWarning, match="input_size"):
        b = gratings(model_size=32, grid="small")
    assert len(a) == len(b) and np.array_equal(a.tensor([0, 5]).numpy(), b.tensor([0, 5]).numpy())
