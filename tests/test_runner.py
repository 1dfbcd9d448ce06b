"""The experiment runner: keyed cache (recomputations counted), seeds, damaged pieces, config validation."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import xarray as xr

from netphys._validation import NetphysError
from netphys.experiments import register
from netphys.experiments.base import Experiment, piece_key
from netphys.experiments.config import load_config
from netphys.experiments.runner import run_experiment

CALLS = {"a": 0, "b": 0}


@dataclass(frozen=True)
class ToyConfig:
    scale: float = 1.0
    offset: float = 0.0
    n: int = 5
    realisations: int = 2
    label: str = "x"
    random_state: int = 0

    def validate(self):
        from netphys._validation import check_int

        check_int(self.n, "n", "ToyConfig", min_value=1)
        check_int(self.realisations, "realisations", "ToyConfig", min_value=1)
        check_int(self.random_state, "random_state", "ToyConfig", min_value=0)
        return self


@register("test.toy")
class Toy(Experiment):
    """Piece a reads (n, scale); piece b reads (offset) and uses a; 'label' is read by neither."""

    Config = ToyConfig
    title = "toy"
    result_name = "toy"

    def run(self, cfg, ctx):
        out = []
        for r in range(cfg.realisations):
            def a():
                CALLS["a"] += 1
                return xr.Dataset({"v": ("i", ctx.rng("draw", r).normal(size=cfg.n) * cfg.scale)})

            pa = ctx.piece("a", a, reads=("n", "scale"), realisation=r, seed=ctx.seed("draw", r))

            def b():
                CALLS["b"] += 1
                return xr.Dataset({"w": ("i", pa["v"].values + cfg.offset)})

            pb = ctx.piece("b", b, reads=("n", "scale", "offset"), realisation=r, seed=ctx.seed("draw", r))
            out.append(pb["w"])
        return xr.Dataset({"w": xr.concat(out, "realisation")})

    def tables(self, result):
        return {"toy": result["w"].to_dataframe().reset_index()}


def _reset():
    CALLS.update(a=0, b=0)


def test_changed_config_recomputes_exactly_what_it_changes(tmp_path):
    _reset()
    first = run_experiment("test.toy", {}, tmp_path, progress=False)
    assert CALLS == {"a": 2, "b": 2}
    # the same config: everything reused
    again = run_experiment("test.toy", {}, tmp_path, progress=False)
    assert CALLS == {"a": 2, "b": 2} and again.cache == {"a": {"computed": 0, "reused": 2},
                                                          "b": {"computed": 0, "reused": 2}}
    xr.testing.assert_equal(first.result["w"], again.result["w"])
    # a field read only by b: only b recomputes
    run_experiment("test.toy", {"offset": 1.0}, tmp_path, progress=False)
    assert CALLS == {"a": 2, "b": 4}
    # a field nobody reads: nothing recomputes
    run_experiment("test.toy", {"label": "y"}, tmp_path, progress=False)
    assert CALLS == {"a": 2, "b": 4}
    # a field read by a (and b): both recompute; a new realisation computes only itself
    run_experiment("test.toy", {"scale": 2.0}, tmp_path, progress=False)
    assert CALLS == {"a": 4, "b": 6}
    run_experiment("test.toy", {"realisations": 3}, tmp_path, progress=False)
    assert CALLS == {"a": 5, "b": 7}
    # the result on disk carries the config it was computed with
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["config"]["realisations"] == 3 and prov["cache"]["a"] == {"computed": 1, "reused": 2}
    assert (tmp_path / "toy.csv").is_file() and (tmp_path / "report.html").is_file()


def test_seed_streams_are_named_and_reproducible(tmp_path):
    _reset()
    a = run_experiment("test.toy", {"realisations": 2}, None, report=False, progress=False).result
    b = run_experiment("test.toy", {"realisations": 3}, None, report=False, progress=False).result
    # realisation 1 does not depend on how many realisations are asked for
    xr.testing.assert_equal(a["w"].isel(realisation=1), b["w"].isel(realisation=1))
    c = run_experiment("test.toy", {"random_state": 1}, None, report=False, progress=False).result
    assert not np.allclose(a["w"].values, c["w"].values)


def test_damaged_piece_is_reported_and_recomputed(tmp_path):
    _reset()
    first = run_experiment("test.toy", {}, tmp_path, progress=False)
    pieces = sorted((tmp_path / "cache").rglob("*.npz"))
    assert len(pieces) == 4
    pieces[0].write_bytes(pieces[0].read_bytes()[:50])       # an interrupted copy
    pieces[1].write_bytes(b"")                                # an empty file
    (tmp_path / "cache" / ".orphan.npz.tmp").write_bytes(b"partial")
    (pieces[2].parent / f".{pieces[2].name}.x1.tmp").write_bytes(b"partial")   # inside a key folder
    (tmp_path / ".toy.nc.x2.tmp").write_bytes(b"partial")                       # an interrupted output
    with pytest.warns(UserWarning, match="damaged cache piece"):
        again = run_experiment("test.toy", {}, tmp_path, progress=False)
    xr.testing.assert_equal(first.result["w"], again.result["w"])
    prov = json.loads((tmp_path / "provenance.json").read_text())
    events = " ".join(prov["cache_events"])
    assert events.count("damaged cache piece") == 2 and events.count("orphaned temporary file") == 3
    assert not list(tmp_path.rglob(".*.tmp"))
    assert "damaged cache piece" in (tmp_path / "report.html").read_text()


def test_piece_written_for_another_key_is_not_reused(tmp_path):
    from netphys.experiments.cache import PieceCache

    c = PieceCache(tmp_path)
    ds = xr.Dataset({"v": ("i", np.arange(3.0))})
    c.put("p", "ab" * 32, '{"k":1}', ds)
    assert c.get("p", "ab" * 32, '{"k":1}') is not None
    fresh = PieceCache(tmp_path)
    assert fresh.get("p", "ab" * 32, '{"k":2}') is None and "another key" in fresh.events[0]


def test_piece_key_reads_only_declared_fields():
    a, b = ToyConfig(), ToyConfig(label="other")
    assert piece_key(a, "p", reads=("n",))[0] == piece_key(b, "p", reads=("n",))[0]
    assert piece_key(a, "p", reads=("label",))[0] != piece_key(b, "p", reads=("label",))[0]
    assert piece_key(a, "p", reads=("n",), layer="x")[0] != piece_key(a, "p", reads=("n",), layer="y")[0]


@pytest.mark.parametrize("text, suffix, match", [
    ("- 1\n- 2\n", ".yaml", "top level is a mapping.*top-level list"),
    ("n: [1, 2\n", ".yaml", "must be a valid YAML file.*parser says"),
    ("{\"n\": 1,}", ".json", "must be a valid JSON file"),
    ("n = \n", ".toml", "must be a valid TOML file"),
    ("random_state: -1\n", ".yaml", "'random_state' parameter of ToyConfig must be an int >= 0, got -1"),
    ("n: 2.5\n", ".yaml", "'n' parameter of ToyConfig must be an int, got 2.5"),
    ("label: 3\n", ".yaml", "'label' parameter of ToyConfig must be a string, got 3"),
    ("nn: 3\n", ".yaml", r"unknown key\(s\) \['nn'\]"),
])
def test_bad_config_files(tmp_path, text, suffix, match):
    p = tmp_path / f"c{suffix}"
    p.write_text(text)
    with pytest.raises(NetphysError, match=match):
        load_config(ToyConfig, p)


def test_fig3_config_validated_before_any_work(tmp_path, monkeypatch):
    from netphys.experiments import prune_distill as pd_

    def boom(*a, **k):  # pragma: no cover - must not be reached
        raise AssertionError("work started")

    monkeypatch.setattr(pd_, "information_across_layers", boom)
    for over, match in [({"networks": []}, "'networks' parameter.*non-empty"),
                        ({"features": []}, "'features' parameter.*non-empty"),
                        ({"networks": ["trained", "hybrid:abc"]}, "'networks' parameter.*hybrid:abc"),
                        ({"realisations": 0}, "'realisations' parameter.*>= 1"),
                        ({"correction": "magic"}, "'correction' parameter.*one of"),
                        ({"layers": "conv1_1", "bins": 1}, "'bins' parameter.*>= 2")]:
        with pytest.raises(NetphysError, match=match):
            run_experiment("prune_distill.fig3", over, tmp_path / "x", progress=False)
    # a lone string is one layer, not its letters
    cfg = load_config(pd_.Fig3Config, {"layers": "conv1_1"})
    assert cfg.layers == ("conv1_1",)


def test_unwritable_out_fails_before_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(NetphysError, match="'out' parameter of run_experiment must be a folder netphys can"):
        run_experiment("test.toy", {}, blocker / "sub", progress=False)


def test_registry_lists_ported_experiments():
    from netphys.experiments.registry import experiment_names, get_experiment

    names = experiment_names()
    for n in ("prune_distill.fig2", "prune_distill.fig3", "prune_distill.fig4", "prune_distill.figC",
              "prune_distill.figD", "prune_distill.fig5", "prune_distill.id_layers", "test.toy"):
        assert n in names
    with pytest.raises(NetphysError, match="'experiment' parameter of netphys run must be one of"):
        get_experiment("nope")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for c in range(2):
        (root / f"c{c}").mkdir()
        for i in range(25):
            Image.fromarray((rng.random((64, 64, 3)) * 255 * (0.5 + c / 2)).astype(np.uint8)).save(
                root / f"c{c}" / f"{i}.png")
    return root


def test_fig3_stale_config_reproduction(tiny_folder, tmp_path):
    """The review's case: rerunning Figure 3 into the same out with bins=4 must not return bins-20 numbers."""
    base = dict(weights="random", images=str(tiny_folder), n_images=50, units=6, layers=["conv2_1", "conv3_1"],
                realisations=1, features=["luminosity", "contrast"], n_shuffles=2, batch_size=25)
    a = run_experiment("prune_distill.fig3", base, tmp_path, progress=False, report=False)
    assert a.cache["information"] == {"computed": 8, "reused": 0}   # 2 networks x 2 layers x 2 features
    b = run_experiment("prune_distill.fig3", {**base, "bins": 4}, tmp_path, progress=False, report=False)
    assert b.cache["information"] == {"computed": 8, "reused": 0}
    fresh = run_experiment("prune_distill.fig3", {**base, "bins": 4}, None, progress=False, report=False)
    xr.testing.assert_equal(b.result["information"], fresh.result["information"])
    assert not np.allclose(a.result["information"].values, b.result["information"].values)
    assert json.loads(b.result.attrs["config"])["bins"] == 4
    # a new layer computes only its own pieces; the others keep their units (named seed streams)
    c = run_experiment("prune_distill.fig3", {**base, "layers": ["conv2_1", "conv3_1", "fc6"]}, tmp_path,
                       progress=False, report=False)
    assert c.cache["information"] == {"computed": 4, "reused": 8}
    xr.testing.assert_equal(c.result["information"].sel(layer=["conv2_1", "conv3_1"]), a.result["information"])


def test_fig3_on_ray_identical_to_serial(tiny_folder, tmp_path):
    """Independent realisations dispatched to a local Ray instance give the serial numbers exactly."""
    pytest.importorskip("ray", reason="ray is not installed (pip install 'netphys[ray]')")
    cfg = dict(weights="random", images=str(tiny_folder), n_images=40, units=5, layers=["conv2_1", "conv3_1"],
               realisations=2, features=["luminosity", "orientation"], n_shuffles=2, batch_size=20,
               orientation_units=4, orientation_images=30)
    serial = run_experiment("prune_distill.fig3", cfg, None, progress=False, report=False).result
    ray = run_experiment("prune_distill.fig3", cfg, tmp_path, progress=False, report=False, backend="ray",
                         max_workers=2)
    assert ray.cache["information"]["computed"] == 2 * 2 * 2 * 2
    for v in ("information", "null", "unit_information"):
        xr.testing.assert_equal(serial[v], ray.result[v])


def test_unreadable_images_policy_reported(tiny_folder, tmp_path):
    import shutil

    folder = tmp_path / "imgs"
    shutil.copytree(tiny_folder, folder)
    good = (folder / "c0" / "0.png").read_bytes()
    (folder / "c0" / "broken.png").write_bytes(good[: len(good) // 3])   # a truncated file
    cfg = dict(weights="random", images=str(folder), n_images=51, units=4, layers=["conv2_1"], realisations=1,
               features=["luminosity"], n_shuffles=1, batch_size=17)
    with pytest.raises(NetphysError, match="broken.png|unreadable"):
        run_experiment("prune_distill.fig3", cfg, tmp_path / "raise", progress=False)
    run = run_experiment("prune_distill.fig3", {**cfg, "on_error": "skip"}, tmp_path / "skip", progress=False)
    prov = json.loads((tmp_path / "skip" / "provenance.json").read_text())
    assert any("broken.png" in w and "left out" in w for w in prov["warnings"])
    assert "broken.png" in (tmp_path / "skip" / "report.html").read_text()
    assert json.loads(run.result.attrs["stimuli"])["images"]["skipped"][0].endswith("broken.png")


def test_network_labels_follow_the_weights_loaded(tiny_folder):
    cfg = dict(weights="random", images=str(tiny_folder), n_images=20, units=3, layers=["conv2_1"], realisations=1,
               features=["luminosity"], n_shuffles=1, batch_size=20, networks=["trained", "random", "hybrid:1"])
    with pytest.warns(UserWarning, match="labelled 'trained' has random weights"):
        res = run_experiment("prune_distill.fig3", cfg, None, progress=False, report=False).result
    assert list(res["weights_kind"].values) == ["random", "random", "hybrid"]


def test_check_experiment_passes_builtins_and_catches_a_broken_plugin(tiny_folder):
    from netphys.testing import check_experiment

    stats = check_experiment("test.toy", {"n": 3})
    assert stats["rerun"] == {"a": {"computed": 0, "reused": 2}, "b": {"computed": 0, "reused": 2}}
    check_experiment("prune_distill.fig3", dict(weights="random", images=str(tiny_folder), n_images=20, units=3,
                                                layers=["conv2_1"], realisations=1, features=["luminosity"],
                                                n_shuffles=1, batch_size=20))

    @dataclass(frozen=True)
    class LeakyConfig:
        random_state: int = 0

    class Leaky(Experiment):
        """Draws from unseeded global randomness and caches nothing: both rules must fail."""

        Config = LeakyConfig

        def run(self, cfg, ctx):
            return xr.Dataset({"v": ("i", np.random.default_rng().normal(size=3))})

    with pytest.raises(AssertionError):
        check_experiment(Leaky)

    @dataclass
    class MutableConfig:
        random_state: int = 0

    class Mutable(Toy):
        Config = MutableConfig

    with pytest.raises(AssertionError, match="must be frozen"):
        check_experiment(Mutable)
