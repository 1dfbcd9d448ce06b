"""CAR filter pruning: known answers, masking == physical removal, fast == naive CAR, stop criteria,
baselines, FLOPs/bytes (Table 2.1 of the thesis), fine-tuning, bad input."""
import numpy as np
import pytest
import torch
from torch import nn

from conftest import no_hooks_left
from netphys._validation import NetphysError
from netphys.interventions import (METHODS, GreedyPruner, LayerSpec, car_importance, class_dependence, finetune,
                                   layer_costs, layer_specs, mask_filters, random_pruning, remove_filters,
                                   split_halves)
from netphys.models import load_model, parameters_sha256
from netphys.stimuli import StimulusSet

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- fixtures
def known_net():
    """x -> 3 filters -> ReLU -> linear. Filter 0 = ReLU(x) carries the class (x > 0); filter 1 = ReLU(-x)
    only adds confidence to class 0; filter 2 = ReLU(x) has zero outgoing weights (provably useless)."""
    net = nn.Sequential(nn.Conv2d(1, 3, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, -1.0, 1.0]).view(3, 1, 1, 1))
        net[0].bias.zero_()
        net[3].weight.copy_(torch.tensor([[0.0, 0.5, 0.0], [1.0, 0.0, 0.0]]))
        net[3].bias.copy_(torch.tensor([0.1, 0.0]))
    return net.eval()


def known_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    sign = np.where(np.arange(n) % 2, 1.0, -1.0)
    x = torch.tensor(rng.uniform(0.5, 2.0, n) * sign, dtype=torch.float32).view(n, 1, 1, 1)
    return x, (sign > 0).astype(int)


class ConvBN(nn.Module):
    """conv -> BN -> ReLU -> pool -> conv -> BN -> ReLU -> avgpool -> flatten -> linear (BN shifts nonzero)."""

    def __init__(self, c1=6, c2=5, classes=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.features = nn.Sequential(nn.Conv2d(3, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(2), nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2),
                                      nn.ReLU(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(nn.Linear(c2 * 4, 16), nn.ReLU(inplace=True), nn.Linear(16, classes))
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.num_features, generator=g))
                    m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                elif isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        self.eval()

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def self_labelled(net, n=48, size=12, seed=0, stimulus_set=False):
    """Random images labelled by the network's own prediction (intact accuracy 1)."""
    imgs = np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    s = StimulusSet.from_arrays(imgs, np.zeros(n, dtype=int), class_names=[str(c) for c in range(4)])
    x = s.tensor()
    with torch.no_grad():
        y = net(x).argmax(1).numpy()
    if stimulus_set:
        return StimulusSet.from_arrays(imgs, y, class_names=[str(c) for c in range(4)], preprocess=s.preprocess)
    return x, y


@pytest.fixture(scope="module")
def vgg():
    return load_model("netphys_vgg16")


# ----------------------------------------------------------------------------- known answers
def test_car_known_answer_useless_filter_first_signal_filter_last():
    net, (x, y) = known_net(), known_data()
    imp = car_importance(net, "conv1", (x, y))
    np.testing.assert_allclose(imp["car"].values, [0.5, 0.0, 0.0])
    assert imp["loss_increase"].values[2] == 0.0  # zero outgoing weights: nothing changes
    assert imp["loss_increase"].values[1] > 0
    pr = GreedyPruner(net, "conv1", n_keep=1).fit((x[:20], y[:20]), (x[20:], y[20:]))
    p = pr.path_
    assert p["removed"].values.tolist() == [-1, 2, 1]  # the useless filter first, the class filter kept
    assert pr.kept_.tolist() == [True, False, False] and pr.removed_.tolist() == [2, 1]
    np.testing.assert_allclose(p["importance"].values[1:], [0.0, 0.0])
    np.testing.assert_allclose(p["selection_accuracy"].values, 1.0)
    np.testing.assert_allclose(p["test_accuracy"].values, 1.0)
    np.testing.assert_allclose(p["compression_ratio"].values, [1.0, 1.5, 3.0])
    assert p.attrs["stopped_by"] == "n_kept" and p.attrs["fast_path"] == 1
    assert p.attrs["mask_site_kind"] == "activation"
    # the signal filter: removing it leaves chance accuracy
    with mask_filters(net, "conv1", [0]), torch.no_grad():
        assert (net(x).argmax(1).numpy() == y).mean() == 0.5
    assert no_hooks_left(net)


def test_ties_are_broken_by_loss_and_recorded():
    net, (x, y) = known_net(), known_data()
    p = GreedyPruner(net, "conv1", n_keep=2).fit((x, y)).path_
    # filters 1 and 2 tie at CAR 0; by index filter 1 would go, the smaller loss increase picks 2
    assert p["removed"].values[1] == 2
    assert p["tied"].values[1] == 2 and p["tie_break"].values[1] == "loss"
    assert np.isnan(p["test_accuracy"].values).all()  # no test split given
    p2 = GreedyPruner(net, "conv1", n_keep=2, tie_break="index").fit((x, y)).path_
    assert p2["removed"].values[1] == 1 and p2["tie_break"].values[1] == "index"
    # per-step CAR of every remaining filter is kept
    np.testing.assert_allclose(p["filter_importance"].values[1], [0.5, 0.0, 0.0])


def test_carc_and_class_dependence():
    net, (x, y) = known_net(), known_data()
    imp = car_importance(net, "conv1", (x, y))
    # without filter 0 every image is called class 0: class 1 loses everything, class 0 nothing
    np.testing.assert_allclose(imp["carc"].sel(filter=0).values, [0.0, 1.0])
    np.testing.assert_allclose(imp["carc"].sel(filter=2).values, [0.0, 0.0])
    dep = class_dependence(imp, n=1)
    assert dep.loc[0, "most_dependent"] == ["1"] and dep.loc[0, "least_dependent"] == ["0"]
    assert dep.loc[0, "carc_max"] == 1.0
    pr = GreedyPruner(net, "conv1", n_keep=1).fit((x, y))
    np.testing.assert_allclose(pr.importance_["carc"].values, imp["carc"].values)
    assert pr.path_["selection_class_accuracy"].dims == ("step", "class")


# ----------------------------------------------------------------------------- masking == removal
def _physically_removed(net: ConvBN, drop):
    """Hand-built smaller ConvBN without filters ``drop`` of features.0 (and BN entries, next conv inputs)."""
    keep = [i for i in range(net.features[0].out_channels) if i not in drop]
    small = ConvBN(c1=len(keep))
    small.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith(("features.0",
                                                                                        "features.1",
                                                                                        "features.4"))},
                          strict=False)
    with torch.no_grad():
        small.features[0].weight.copy_(net.features[0].weight[keep])
        small.features[0].bias.copy_(net.features[0].bias[keep])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(small.features[1], name).copy_(getattr(net.features[1], name)[keep])
        small.features[4].weight.copy_(net.features[4].weight[:, keep])
        small.features[4].bias.copy_(net.features[4].bias)
    return small.eval()


def test_masking_equals_physical_removal_toy():
    net = ConvBN()
    x = torch.randn(5, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    bn = net.features[1]
    shift = (bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)).detach()
    drop = sorted({int(shift.argmax()), 4})  # one channel whose BN shift passes the ReLU
    assert shift.max() > 0.1
    small = _physically_removed(net, drop)
    with torch.no_grad():
        want = small(x)
        with mask_filters(net, "conv1", drop):
            got = net(x)
        lib = remove_filters(net, "conv1", drop)(x)
        # zeroing the convolution alone (before batch norm) is NOT removal: the BN shift survives
        w = net.features[0].weight.clone(), net.features[0].bias.clone()
        net.features[0].weight[drop] = 0
        net.features[0].bias[drop] = 0
        wrong = net(x)
        net.features[0].weight.copy_(w[0])
        net.features[0].bias.copy_(w[1])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(lib, want, atol=1e-5, rtol=0)
    assert (wrong - want).abs().max() > 1e-3
    assert no_hooks_left(net)
    # the last conv: its channels reach the classifier through avgpool + flatten (4 features each)
    with torch.no_grad(), mask_filters(net, "conv2", [0, 3]):
        got2 = net(x)
    torch.testing.assert_close(remove_filters(net, "conv2", [0, 3])(x), got2, atol=1e-5, rtol=0)


def test_masking_equals_physical_removal_vgg(vgg):
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    sha = parameters_sha256(vgg)
    for layer, drop in (("conv1_2", [0, 5, 9]), ("conv4_2", list(range(0, 128, 3))), ("conv5_3", [1, 2, 100])):
        small = remove_filters(vgg, layer, drop)
        with torch.no_grad():
            with mask_filters(vgg, layer, drop):
                masked = vgg(x)
            torch.testing.assert_close(small(x), masked, atol=1e-5, rtol=0)
    assert small.features[40].out_channels == 125 and small.features[41].num_features == 125
    assert small.classifier[0].in_features == 125 * 4
    assert parameters_sha256(vgg) == sha and no_hooks_left(vgg)


def test_remove_filters_refuses_residual_connections():
    model = load_model("efficientnet_lite0", "random")
    with pytest.raises(NetphysError, match="residual connection"):
        remove_filters(model, "block14_project", [0])
    with pytest.raises(NetphysError, match="never pruned to zero"):
        remove_filters(ConvBN(), "conv1", list(range(6)))


# ----------------------------------------------------------------------------- fast == naive
def _compare_fast_naive(model, layer, data, filters, removed=(), batch_size=256):
    fast = car_importance(model, layer, data, filters=filters, removed=removed, batch_size=batch_size)
    naive = car_importance(model, layer, data, filters=filters, removed=removed, fast=False,
                           batch_size=batch_size)
    assert fast.attrs["fast_path"] == 1 and naive.attrs["fast_path"] == 0
    np.testing.assert_allclose(fast["car"].values, naive["car"].values, atol=1e-6, rtol=0)
    np.testing.assert_allclose(fast["accuracy_after"].values, naive["accuracy_after"].values, atol=1e-6, rtol=0)
    np.testing.assert_allclose(fast["loss_after"].values, naive["loss_after"].values, atol=1e-5, rtol=0)
    np.testing.assert_allclose(fast["carc"].values, naive["carc"].values, atol=1e-6, rtol=0)
    return fast


def test_fast_equals_naive_toy():
    net = ConvBN()
    x, y = self_labelled(net, n=20)
    for layer in ("conv1", "conv2", "fc3"):
        # batch_size 64 > 20 images: three candidates share each suffix forward
        f = _compare_fast_naive(net, layer, (x, y), None, removed=[0], batch_size=64)
        assert f["car"].size == {"conv1": 5, "conv2": 4, "fc3": 15}[layer]
    assert no_hooks_left(net)


def test_fast_equals_naive_vgg(vgg):
    imgs = np.random.default_rng(3).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    s = StimulusSet.from_arrays(imgs, np.arange(16) % 10, preprocess=vgg.netphys.preprocess)
    _compare_fast_naive(vgg, "conv5_1", s, list(range(0, 128, 16)), removed=[3, 5], batch_size=64)
    _compare_fast_naive(vgg, "conv3_1", s, [0, 7, 40], batch_size=16)


def test_fast_equals_naive_efficientnet_last_stages():
    """EfficientNet-Lite0 (random weights): the cut passes the residual input on to the suffix."""
    model = load_model("efficientnet_lite0", "random")
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    y = np.array([5, 500, 999])
    for layer in ("block14_project", "block15_expand", "head"):
        f = _compare_fast_naive(model, layer, (x, y), [0, 1, 2, 17])
        assert f.attrs["fast_path"] == 1
    assert no_hooks_left(model)


# ----------------------------------------------------------------------------- stop criteria, path
@pytest.fixture(scope="module")
def convbn_data():
    net = ConvBN(c1=8)
    sel = self_labelled(net, n=40, seed=1, stimulus_set=True)
    tst = self_labelled(net, n=40, seed=2, stimulus_set=True)
    return net, sel, tst


def test_stop_at_keep_ratio_and_n_keep(convbn_data):
    net, sel, tst = convbn_data
    p = GreedyPruner(net, "conv1", keep_ratio=0.5).fit(sel, tst).path_
    assert p["n_kept"].values[-1] == 4 and p.sizes["step"] == 5
    assert p.attrs["stopped_by"] == "n_kept" and p.attrs["max_drop"] == ""
    p = GreedyPruner(net, "conv1", keep_ratio=0.3).fit(sel, tst).path_
    assert p["n_kept"].values[-1] == 3  # ceil(0.3 * 8)
    p = GreedyPruner(net, "conv1", n_keep=6).fit(sel, tst).path_
    assert p["n_kept"].values.tolist() == [8, 7, 6]
    assert not np.isnan(p["test_accuracy"].values).any()
    assert p["test_class_accuracy"].shape == (3, 4)


def test_stop_at_relative_accuracy_drop(convbn_data):
    net, sel, tst = convbn_data
    pr = GreedyPruner(net, "conv1", max_drop=0.1).fit(sel, tst)
    p = pr.path_
    acc0 = p["selection_accuracy"].values[0]
    assert acc0 == 1.0  # self-labelled
    assert (p["selection_accuracy"].values >= 0.9 * acc0).all()
    if p.attrs["stopped_by"] == "max_drop":  # every next removal would drop more than 10 %
        imp = car_importance(net, "conv1", sel, removed=~pr.kept_)
        assert imp["accuracy_after"].max() < 0.9 * acc0
    default = GreedyPruner(net, "conv1").fit(sel, tst).path_
    assert default.attrs["max_drop"] == 0.05
    assert (default["selection_accuracy"].values >= 0.95).all()


def test_never_prunes_a_layer_to_zero():
    net, (x, y) = known_net(), known_data()
    p = GreedyPruner(net, "conv1", keep_ratio=1e-9).fit((x, y)).path_
    assert p["n_kept"].values[-1] == 1 and p["kept"].values[-1].sum() == 1
    p = GreedyPruner(net, "conv1", max_drop=0.99).fit((x, y)).path_
    assert p["n_kept"].values.min() == 1


def test_flops_and_bytes_in_the_path(convbn_data):
    net, sel, tst = convbn_data
    p = GreedyPruner(net, "conv1", n_keep=5).fit(sel, tst).path_
    specs = {s.name: s for s in layer_specs(net, sel.tensor([0]))}
    assert p["layer"].values.tolist() == ["features.0", "features.4", "classifier.0", "classifier.2"]
    assert p["layer_alias"].values.tolist() == ["conv1", "conv2", "fc3", "fc4"]
    c1, c2 = specs["features.0"], specs["features.4"]
    for k, row in zip(p["n_kept"].values, p["flops"].values):
        assert row[0] == 12 * 12 * k * 9 * 3  # k_L^2 n_L f_L^2 n_{L-1}
        assert row[1] == 6 * 6 * 5 * 9 * k  # the next conv reads k channels
        assert row[2] == specs["classifier.0"].cost()[0] == 20 * 16
    np.testing.assert_array_equal(p["bytes"].values[:, 0], 4 * 9 * 3 * p["n_kept"].values)
    assert c1.out_size == (12, 12) and c2.out_size == (6, 6)


def test_path_format_is_shared_by_all_methods(convbn_data):
    net, sel, tst = convbn_data
    ref = None
    for method in METHODS:
        p = GreedyPruner(net, "conv1", method=method, n_keep=5, random_state=0).fit(sel, tst).path_
        names = sorted(p.data_vars)
        ref = ref or names
        assert names == ref and p.attrs["method"] == method and p.sizes["step"] == 4


def test_baseline_orders():
    net = ConvBN(c1=8)
    x, y = self_labelled(net, n=24)
    w_in = net.features[0].weight.detach().abs().mean((1, 2, 3)).numpy()
    w_out = net.features[4].weight.detach().abs().mean((0, 2, 3)).numpy()
    p = GreedyPruner(net, "conv1", method="incoming", n_keep=1).fit((x, y)).path_
    assert p["removed"].values[1:].tolist() == np.argsort(w_in, kind="stable")[:7].tolist()
    np.testing.assert_allclose(p["importance"].values[1:], np.sort(w_in)[:7], rtol=1e-6)
    assert "mean of |w|" in p.attrs["importance_reduction"]
    p = GreedyPruner(net, "conv1", method="outgoing", n_keep=1).fit((x, y)).path_
    assert p["removed"].values[1:].tolist() == np.argsort(w_out, kind="stable")[:7].tolist()
    one = GreedyPruner(net, "conv1", method="car_oneshot", n_keep=1).fit((x, y))
    imp = one.importance_
    order = np.lexsort((np.arange(8), imp["loss_after"].values, imp["car"].values))
    assert one.path_["removed"].values[1:].tolist() == order[:7].tolist()


def test_random_pruning_is_seeded():
    net = ConvBN(c1=8)
    x, y = self_labelled(net, n=16)
    a = GreedyPruner(net, "conv1", method="random", n_keep=1, random_state=3).fit((x, y)).path_
    b = GreedyPruner(net, "conv1", method="random", n_keep=1, random_state=3).fit((x, y)).path_
    c = GreedyPruner(net, "conv1", method="random", n_keep=1, random_state=4).fit((x, y)).path_
    assert a["removed"].values.tolist() == b["removed"].values.tolist() != c["removed"].values.tolist()
    r = random_pruning(net, "conv1", (x, y), n_repeats=10, random_state=0, n_keep=1)
    assert r.sizes["repeat"] == 10 and r.sizes["step"] == 8
    orders = {tuple(o) for o in r["removed"].values[:, 1:].astype(int)}
    assert len(orders) > 5
    assert (r["stopped_by"].values == "n_kept").all() and r["seed"].size == 10
    r2 = random_pruning(net, "conv1", (x, y), n_repeats=10, random_state=0, n_keep=1)
    np.testing.assert_array_equal(r["removed"].values, r2["removed"].values)


def test_split_halves_and_disjoint_splits(tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.new("RGB", (12, 12), (40 * i, 0, 0)).save(tmp_path / c / f"{i}.png")
    s = StimulusSet.from_folder(tmp_path)
    sel, tst = split_halves(s, random_state=0)
    assert len(sel) == 6 and len(tst) == 4
    assert not set(sel.coords["source"]) & set(tst.coords["source"])
    assert np.bincount(sel.labels).tolist() == [3, 3]
    net = ConvBN(classes=2)
    with pytest.raises(NetphysError, match="disjoint from the selection"):
        GreedyPruner(net, "conv1", n_keep=5).fit(sel, s)


# ----------------------------------------------------------------------------- FLOPs table
#: Caffe AlexNet (227 px input; conv2, conv4, conv5 in 2 groups): name, n_{L-1} (all groups), n_L, f_L,
#: k_L, groups.
ALEXNET = [LayerSpec("conv1", "conv", 3, 96, 11, 55), LayerSpec("conv2", "conv", 96, 256, 5, 27, groups=2),
           LayerSpec("conv3", "conv", 256, 384, 3, 13), LayerSpec("conv4", "conv", 384, 384, 3, 13, groups=2),
           LayerSpec("conv5", "conv", 384, 256, 3, 13, groups=2)]

#: Table 2.1 of the thesis: layer -> [(method, remaining filters, bytes (M), FLOPs (M), compression)].
TABLE_2_1 = {
    "conv1": [("original", 96, 0.14, 105.41, None), ("incoming", 90, 0.13, 98.82, 1.07),
              ("outgoing", 88, 0.13, 96.63, 1.09), ("car", 82, 0.12, 90.04, 1.17), ("finetuned", 58, 0.08, 63.69, 1.66)],
    "conv2": [("original", 256, 1.23, 223.95, None), ("incoming", 223, 1.07, 195.08, 1.15),
              ("outgoing", 217, 1.04, 189.83, 1.18), ("car", 189, 0.91, 165.33, 1.35),
              ("finetuned", 153, 0.73, 133.84, 1.67)],
    "conv3": [("original", 384, 3.54, 149.52, None), ("incoming", 342, 3.15, 133.17, 1.12),
              ("outgoing", 334, 3.08, 130.05, 1.15), ("car", 287, 2.64, 111.75, 1.34),
              ("finetuned", 214, 1.97, 83.33, 1.79)],
    "conv4": [("original", 384, 2.65, 112.14, None), ("incoming", 332, 2.29, 96.95, 1.16),
              ("outgoing", 346, 2.40, 101.04, 1.11), ("car", 279, 1.93, 81.48, 1.38),
              ("finetuned", 225, 1.56, 65.71, 1.71)],
    "conv5": [("original", 256, 1.77, 74.76, None), ("incoming", 220, 1.52, 64.25, 1.16),
              ("outgoing", 222, 1.53, 64.83, 1.15), ("car", 171, 1.18, 49.94, 1.50),
              ("finetuned", 176, 1.22, 51.40, 1.45)],
}
#: the 4 of 50 printed entries that are not the formula's value rounded to 0.01 M (truncated or slipped
#: by one in the last digit): conv1 original FLOPs 105.4152 M (printed 105.41), conv1 incoming FLOPs
#: 98.8268 M (98.82), conv2 CAR FLOPs 165.3372 M (165.33), conv4 outgoing bytes 2.3916 M (2.40).
SLIPS = {("conv1", "original", "flops"), ("conv1", "incoming", "flops"), ("conv2", "car", "flops"),
         ("conv4", "outgoing", "bytes")}


def test_flops_and_bytes_reproduce_table_2_1():
    n_checked = 0
    for layer, rows in TABLE_2_1.items():
        n0 = rows[0][1]
        for method, kept, mbytes, mflops, ratio in rows:
            # the table counts the pruned layer's own filters only (the next layer's inputs left whole)
            costs = layer_costs(ALEXNET, filters={layer: kept})
            row = costs.loc[layer]
            for what, printed in (("flops", mflops), ("bytes", mbytes)):
                if (layer, method, what) in SLIPS:
                    assert abs(row[what] / 1e6 - printed) < 0.0101 and round(row[what] / 1e6, 2) != printed
                else:
                    assert round(row[what] / 1e6, 2) == printed, (layer, method, what, row[what])
                n_checked += 1
            if ratio is not None:
                assert round(n0 / kept, 2) == ratio
            others = costs.drop(index=layer)
            assert (others["flops"] == layer_costs(ALEXNET).drop(index=layer)["flops"]).all()
    assert n_checked == 50
    # exact values of the first row: 55^2 * 96 * 11^2 * 3 and 4 * 11^2 * 3 * 96
    full = layer_costs(ALEXNET)
    assert full.loc["conv1", "flops"] == 105_415_200 and full.loc["conv1", "bytes"] == 139_392
    assert full.loc["conv2", "flops"] == 223_948_800  # 27^2 * 256 * 5^2 * 48 (per group)
    # with the next layer's inputs (what the pruner's path records): conv3 reads 189 of 256 channels
    both = layer_costs(ALEXNET, filters={"conv2": 189}, inputs={"conv3": 189})
    assert both.loc["conv3", "flops"] == 13 ** 2 * 384 * 9 * 189


# ----------------------------------------------------------------------------- fine-tuning
def test_finetune_keeps_removed_channels_at_zero():
    net = ConvBN(c1=8)
    sel = self_labelled(net, n=48, seed=5, stimulus_set=True)
    x, y = sel.tensor(), sel.labels
    drop = [0, 2, 5]
    with mask_filters(net, "conv1", drop), torch.no_grad():
        acc_before = (net(x).argmax(1).numpy() == y).mean()
    w_pruned = net.features[0].weight.detach().clone()
    w_other = net.classifier[2].weight.detach().clone()
    hist = finetune(net, {"conv1": drop}, sel, iterations=60, batch_size=8)
    assert len(hist) == 60 and np.isfinite(hist["loss"]).all()
    assert not net.training
    post = {}
    h = net.features[2].register_forward_hook(lambda m, i, o: post.setdefault("relu", o.clone()))
    with torch.no_grad():
        acc_after = (net(x).argmax(1).numpy() == y).mean()  # no mask: the zeros are in the weights
    h.remove()
    assert post["relu"][:, drop].abs().max() == 0
    assert net.features[4].weight[:, drop].abs().max() == 0  # outgoing connections stay removed
    keep = [i for i in range(8) if i not in drop]
    torch.testing.assert_close(net.features[0].weight[keep], w_pruned[keep])  # lr 0 for the pruned layer
    assert not torch.equal(net.classifier[2].weight, w_other)  # lr 1e-4 elsewhere
    assert acc_after >= acc_before - 0.1


# ----------------------------------------------------------------------------- bad input
def test_bad_input_is_refused_and_changes_nothing(vgg):
    net, (x, y) = known_net(), known_data()
    sha = parameters_sha256(net)
    with pytest.raises(NetphysError, match="'layer' parameter of GreedyPruner must be a Conv2d or Linear"):
        GreedyPruner(net, "1")  # the ReLU
    with pytest.raises(NetphysError, match="a layer with filters.*MaxPool2d"):
        GreedyPruner(vgg, "pool1")
    for bad in (0, 1.5, -0.1, float("nan"), True):
        with pytest.raises(NetphysError, match=r"'keep_ratio' parameter of GreedyPruner must be a number in \(0, 1\]"):
            GreedyPruner(net, "conv1", keep_ratio=bad)
    with pytest.raises(NetphysError, match="'n_keep' parameter"):
        GreedyPruner(net, "conv1", n_keep=0)
    with pytest.raises(NetphysError, match="'max_drop' parameter"):
        GreedyPruner(net, "conv1", max_drop=1.0)
    with pytest.raises(NetphysError, match="'method' parameter"):
        GreedyPruner(net, "conv1", method="l1")
    nan_score = GreedyPruner(net, "conv1", score=lambda logits, t: float("nan"), n_keep=1)
    with pytest.raises(NetphysError, match="'score' parameter of GreedyPruner.fit must be a callable returning a "
                                           "finite score, got nan"):
        nan_score.fit((x, y))
    with pytest.raises(NetphysError, match="'selection' parameter"):
        GreedyPruner(net, "conv1").fit((x, -np.ones(len(x), dtype=int)))
    with pytest.raises(NetphysError, match="logits"):
        GreedyPruner(net, "conv1").fit((x, y + 5))
    with pytest.raises(NetphysError, match="'filters' parameter of mask_filters"), mask_filters(net, "conv1", [3]):
        pass
    assert parameters_sha256(net) == sha and no_hooks_left(net)
    assert not hasattr(nan_score, "path_")


def test_class_index_maps_labels_to_outputs():
    net, (x, y) = known_net(), known_data()
    s = StimulusSet.from_arrays(np.zeros((len(y), 4, 4, 3), dtype=np.uint8), y, class_names=["neg", "pos"])
    swapped = car_importance(net, "conv1", (x, y), class_index=[1, 0])
    assert swapped.attrs["accuracy"] == 0.0
    by_name = _as_data_targets(s, {"neg": 1, "pos": 0})
    np.testing.assert_array_equal(by_name, 1 - y)
    with pytest.raises(NetphysError, match="'class_index' parameter"):
        _as_data_targets(s, {"neg": 1})


def _as_data_targets(stimuli, class_index):
    from netphys.interventions.pruning import _as_data

    return _as_data(stimuli, "selection", "test", class_index).targets


def test_callable_score():
    net, (x, y) = known_net(), known_data()

    def neg_loss(logits, targets):
        return -float(torch.nn.functional.cross_entropy(logits, targets))

    p = GreedyPruner(net, "conv1", score=neg_loss, n_keep=1).fit((x, y)).path_
    assert p["removed"].values.tolist() == [-1, 2, 1]
    np.testing.assert_allclose(p["selection_score"].values, -p["selection_loss"].values, rtol=1e-5)
    assert p.attrs["score"] == "neg_loss"
