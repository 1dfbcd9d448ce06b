"""RAR (D2): dual-form ridge with removable filters vs scikit-learn, the greedy path, bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold

from netphys._validation import NetphysError
from netphys.readout.ridge_dual import (
    DualRidgeRemoval,
    bench_rar,
    choose_lambda,
    rar_path,
    rar_scores,
    three_way_split,
)

torch.set_num_threads(1)


def _features(n=110, C=8, shape=(2, 3), n_neurons=3, drive=(2, 5), noise=0.5, seed=0):
    """Features (n, C, *shape) with per-column offsets; responses driven by the ``drive`` filters."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, C) + shape) * rng.uniform(0.5, 2.0, (1, C) + shape) + rng.normal(size=(1, C) + shape)
    p = int(np.prod(shape))
    Y = np.full((n, n_neurons), 3.0)
    for c in drive:
        Y += X[:, c].reshape(n, p) @ rng.normal(size=(p, n_neurons))
    Y += noise * rng.normal(size=(n, n_neurons))
    return X, Y


def _sk_r(Xf, Yf, Xs, Ys, keep, lam, fit_intercept=True):
    """Per-neuron Pearson r of scikit-learn's Ridge refit on the kept filters."""
    nf, ns = len(Xf), len(Xs)
    est = Ridge(alpha=lam, fit_intercept=fit_intercept).fit(Xf[:, keep].reshape(nf, -1), Yf)
    pred = est.predict(Xs[:, keep].reshape(ns, -1)).reshape(ns, -1)
    Ys = Ys.reshape(ns, -1)
    return np.array([np.corrcoef(pred[:, j], Ys[:, j])[0, 1] for j in range(Ys.shape[1])]), pred


# ------------------------------------------------------------------------------- exactness vs sklearn
@pytest.mark.parametrize("max_gram_bytes", [1 << 30, 0])  # stored Gram blocks / recomputed per chunk
def test_dual_scores_equal_sklearn_ridge_for_random_removals(max_gram_bytes):
    X, Y = _features()
    Xf, Yf, Xs, Ys = X[:60], Y[:60], X[60:], Y[60:]
    lam = 4.0
    m = DualRidgeRemoval(lam, max_gram_bytes=max_gram_bytes, chunk_bytes=50_000).fit(Xf, Yf, Xs, Ys)
    assert m.gram_stored_ == (max_gram_bytes > 0)
    rng = np.random.default_rng(1)
    for _ in range(4):
        removed = set(rng.choice(8, size=rng.integers(0, 5), replace=False).tolist())
        cand = [c for c in range(8) if c not in removed]
        r = m.scores(removed=removed, candidates=cand)
        assert r.shape == (len(cand), 3)
        for i, c in enumerate(cand):
            keep = [k for k in range(8) if k not in removed | {c}]
            ref, _ = _sk_r(Xf, Yf, Xs, Ys, keep, lam)
            np.testing.assert_allclose(r[i], ref, rtol=0, atol=1e-6)
        # the state's own score and the held-out prediction (intercept included)
        keep = [k for k in range(8) if k not in removed]
        ref, pred = _sk_r(Xf, Yf, Xs, Ys, keep, lam)
        np.testing.assert_allclose(m.score_current(removed=removed), ref, rtol=0, atol=1e-6)
        np.testing.assert_allclose(m.predict(Xs, removed=removed), pred, rtol=0, atol=1e-8)


def test_one_neuron_no_intercept_blocks_of_different_widths_and_coef():
    rng = np.random.default_rng(3)
    n, widths = 70, [3, 1, 5, 2]
    blocks = [rng.normal(size=(n, w)) + 1.0 for w in widths]
    y = blocks[0] @ rng.normal(size=3) + blocks[2] @ rng.normal(size=5) + rng.normal(size=n)
    F = np.hstack(blocks)
    cols = np.split(np.arange(F.shape[1]), np.cumsum(widths)[:-1])
    for fit_intercept in (True, False):
        m = DualRidgeRemoval(2.0, fit_intercept=fit_intercept).fit(
            [b[:40] for b in blocks], y[:40], [b[40:] for b in blocks], y[40:])
        r = m.scores(removed={1})
        assert r.shape == (3,)
        for i, c in enumerate([0, 2, 3]):
            keep = np.concatenate([cols[k] for k in range(4) if k not in (1, c)])
            est = Ridge(alpha=2.0, fit_intercept=fit_intercept).fit(F[:40, keep], y[:40])
            assert abs(r[i] - np.corrcoef(est.predict(F[40:, keep]), y[40:])[0, 1]) < 1e-6
        est = Ridge(alpha=2.0, fit_intercept=fit_intercept).fit(F[:40], y[:40])
        beta = m.coef()
        flat = np.concatenate([beta[c, :w] for c, w in enumerate(widths)])
        np.testing.assert_allclose(flat, est.coef_, rtol=0, atol=1e-8)
        assert np.all(beta[1, 1:] == 0)  # zero padding of the narrow block
        assert isinstance(m.score_current(), float)


def test_remove_updates_state_and_matches_explicit_removed():
    X, Y = _features(seed=4)
    m = DualRidgeRemoval(3.0).fit(X[:60], Y[:60], X[60:], Y[60:])
    full = m.scores()
    m.remove(3)
    assert m.removed_ == (3,) and 3 not in m.kept_
    np.testing.assert_allclose(m.score_current(), full[3], atol=1e-12)
    np.testing.assert_allclose(m.scores(), m.scores(removed={3}), atol=1e-12)
    np.testing.assert_allclose(m.scores(candidates=[0, 7]), m.scores(removed=[3])[[0, 6]], atol=1e-12)
    m.reset()
    assert m.removed_ == () and len(m.kept_) == 8
    # removing everything leaves a constant prediction: r is undefined
    assert np.all(np.isnan(m.scores(removed=range(7), candidates=[7])))


def test_rar_scores_functional_form():
    X, Y = _features(n=100, n_neurons=1, seed=5)
    y = Y[:, 0]
    rar = rar_scores(X[:60], y[:60], X[60:], y[60:], 3.0, removed={0})
    assert rar.shape == (7,)
    base, _ = _sk_r(X[:60], y[:60], X[60:], y[60:], list(range(1, 8)), 3.0)
    for i, c in enumerate(range(1, 8)):
        ref, _ = _sk_r(X[:60], y[:60], X[60:], y[60:], [k for k in range(1, 8) if k != c], 3.0)
        assert abs(rar[i] - (base[0] - ref[0])) < 1e-6
    # the driving filters are the important ones
    assert set(np.argsort(rar)[-2:] + 1) == {2, 5}


# ------------------------------------------------------------------------------------------ greedy path
def _split_problem(n=180, seed=0, n_neurons=1, **kw):
    X, Y = _features(n=n, n_neurons=n_neurons, seed=seed, **kw)
    fit, sel, test = three_way_split(n, (0.5, 0.25, 0.25), random_state=seed)
    return X, Y, fit, sel, test


def test_three_way_split_is_disjoint_and_complete():
    fit, sel, test = three_way_split(101, random_state=0)
    assert not (set(fit) & set(sel)) and not (set(fit) & set(test)) and not (set(sel) & set(test))
    assert sorted(np.concatenate([fit, sel, test]).tolist()) == list(range(101))
    assert len(fit) > len(sel) >= 2 and len(test) >= 2


def test_greedy_path_keeps_the_driving_filters_to_the_end_and_never_zero():
    X, Y, fit, sel, test = _split_problem(noise=0.3)
    y = Y[:, 0]
    assert not (set(fit) & set(sel) | set(fit) & set(test) | set(sel) & set(test))
    ds = rar_path(X[fit], y[fit], X[sel], y[sel], X[test], y[test], 2.0, max_drop=None)
    C = 8
    assert ds.sizes["step"] == C and ds.attrs["stop_reason"] == "one_filter_left"
    assert ds.n_remaining.values.tolist() == list(range(C, 0, -1))   # never to zero
    removed = ds.removed.values[1:].tolist()
    assert len(set(removed)) == C - 1 and -1 not in removed
    assert set(removed[:C - 2]) == set(range(C)) - {2, 5}               # {2, 5} kept to the end
    assert ds.removed.values[0] == -1 and ds.tied.values[0] == 0
    # RAR values are r(current) - r(without i) and the removed filter has the smallest one
    for s in range(1, C):
        rar = ds.rar.values[s]
        j = int(ds.removed.values[s])
        assert rar[j] == np.nanmin(rar)
        assert abs(ds.selection_score.values[s - 1] - rar[j] - ds.selection_score.values[s]) < 1e-12
        assert np.isnan(rar[ds.removed.values[1:s]]).all()
    # the report split's score is sklearn's refit on the fit split with the remaining filters
    for s in (0, 3, C - 2):
        keep = sorted(set(range(C)) - set(ds.removed.values[1:s + 1].tolist()))
        ref, _ = _sk_r(X[fit], y[fit], X[test], y[test], keep, 2.0)
        assert abs(ds.test_score.values[s] - ref[0]) < 1e-6
    assert ds.selection_score.values[C - 2] > 0.9 and ds.test_score.values[C - 2] > 0.9
    assert {"step", "removed", "selection_score", "test_score", "n_remaining", "tied"} <= set(ds.variables)
    # without stored Gram blocks (recomputed per chunk): the same path
    ds0 = rar_path(X[fit], y[fit], X[sel], y[sel], X[test], y[test], 2.0, max_drop=None, max_gram_bytes=0)
    assert ds0.attrs["gram_stored"] == 0 and ds0.removed.values.tolist() == ds.removed.values.tolist()
    np.testing.assert_allclose(ds0.test_score, ds.test_score, atol=1e-10)


def test_stopping_rules_and_several_neurons():
    X, Y, fit, sel, test = _split_problem(n_neurons=2, noise=0.3, seed=2)
    args = (X[fit], Y[fit], X[sel], Y[sel], X[test], Y[test], 2.0)
    ds = rar_path(*args, n_keep=3, max_drop=None)
    assert ds.n_remaining.values[-1] == 3 and ds.attrs["stop_reason"] == "n_keep"
    assert ds.selection_r.shape == (6, 2)
    np.testing.assert_allclose(ds.selection_score, ds.selection_r.mean("unit"))
    ds = rar_path(*args, stop_ratio=4, max_drop=None)                   # 8 / 4 = 2 filters left
    assert ds.n_remaining.values[-1] == 2 and ds.attrs["stop_reason"] == "stop_ratio"
    ds = rar_path(*args)                                                # default: 5% relative drop
    assert ds.attrs["stop_reason"] == "max_drop"
    r0 = ds.selection_score.values[0]
    assert np.all(ds.selection_score.values >= r0 - 0.05 * abs(r0))
    assert ds.n_remaining.values[-1] >= 2


def test_ties_between_dead_filters_break_to_the_first():
    X, Y, fit, sel, test = _split_problem(noise=0.3, seed=3, drive=(1, 2, 3, 5, 7))
    X = X.copy()
    X[:, [0, 4, 6]] = 0.0                                  # dead filters: RAR exactly 0, the others > 0
    y = Y[:, 0]
    ds = rar_path(X[fit], y[fit], X[sel], y[sel], X[test], y[test], 2.0, n_keep=5, max_drop=None)
    assert ds.removed.values[1:].tolist() == [0, 4, 6]
    assert ds.tied.values[1:].tolist() == [3, 2, 1]
    ds = rar_path(X[fit], y[fit], X[sel], y[sel], X[test], y[test], 2.0, n_keep=7, max_drop=None,
                  tie_break="last")
    assert ds.removed.values[1] == 6


def test_overlapping_splits_are_refused():
    X, Y, fit, sel, _test = _split_problem()
    y = Y[:, 0]
    with pytest.raises(NetphysError, match="'X_test'.*disjoint from X_fit"):
        rar_path(X[fit], y[fit], X[sel], y[sel], X[fit[:10]], y[fit[:10]], 1.0)
    ds = rar_path(X[fit], y[fit], X[sel], y[sel], X[fit[:10]], y[fit[:10]], 1.0, n_keep=7,
                  check_disjoint=False)
    assert ds.sizes["step"] == 2


def test_choose_lambda_is_ridgecv_on_the_fit_split():
    X, Y = _features(n=80, n_neurons=1, seed=6)
    grid = np.logspace(-2, 3, 11)
    lam = choose_lambda(X, Y[:, 0], lambdas=grid, cv=4, random_state=1)
    ref = RidgeCV(alphas=grid, cv=KFold(4, shuffle=True, random_state=1)).fit(X.reshape(80, -1), Y[:, 0])
    assert lam == ref.alpha_ and lam in grid
    assert choose_lambda(X, Y) > 0                                    # default scale-free grid
    X2, Y2, fit, sel, test = _split_problem(seed=7)
    ds = rar_path(X2[fit], Y2[fit, 0], X2[sel], Y2[sel, 0], X2[test], Y2[test, 0], "cv", n_keep=7)
    assert ds.attrs["lam"] > 0


# ------------------------------------------------------------------------------------------- bad input
def test_bad_inputs():
    X, Y = _features(n=60)
    Xf, Yf, Xs, Ys = X[:40], Y[:40], X[40:], Y[40:]
    Ybad = Yf.copy()
    Ybad[3, 1] = np.nan
    with pytest.raises(NetphysError, match="'Y_fit' parameter of DualRidgeRemoval.fit must be finite"):
        DualRidgeRemoval(1.0).fit(Xf, Ybad, Xs, Ys)
    Ybad = Ys.copy()
    Ybad[0, 0] = np.inf
    with pytest.raises(NetphysError, match="'Y_sel'.*finite"):
        DualRidgeRemoval(1.0).fit(Xf, Yf, Xs, Ybad)
    with pytest.raises(NetphysError, match="'Y_test' parameter of rar_path must be finite"):
        rar_path(Xf, Yf, Xs[:10], Ys[:10], Xs[10:], np.full_like(Ys[10:], np.nan), 1.0)
    for lam in (0, -1.0, np.nan, True, "big"):
        with pytest.raises(NetphysError, match="'lam'"):
            DualRidgeRemoval(lam)
    with pytest.raises(NetphysError, match="'lam' parameter of rar_path"):
        rar_path(Xf, Yf, Xs[:10], Ys[:10], Xs[10:], Ys[10:], 0.0)
    Xbad = Xf.copy()
    Xbad[0, 0, 0, 0] = np.nan
    with pytest.raises(NetphysError, match="'X_fit'.*finite"):
        DualRidgeRemoval(1.0).fit(Xbad, Yf, Xs, Ys)
    m = DualRidgeRemoval(1.0)
    with pytest.raises(NetphysError, match="fitted"):
        m.scores()
    with pytest.raises(NetphysError, match="'Y_fit'.*one row per stimulus"):
        m.fit(Xf, Yf[:-1], Xs, Ys)
    with pytest.raises(NetphysError, match="'X_sel'.*fit split's filters"):
        m.fit(Xf, Yf, Xs[:, :5], Ys)
    with pytest.raises(NetphysError, match="'X_sel'.*fit split's filters"):
        m.fit(Xf, Yf, Xs[:, :, :1], Ys)
    with pytest.raises(NetphysError, match="'Y_sel'.*3 neuron"):
        m.fit(Xf, Yf, Xs, Ys[:, :2])
    with pytest.raises(NetphysError, match="'Y_fit'.*non-constant"):
        m.fit(Xf, np.ones(40), Xs, Ys[:, 0])
    with pytest.raises(NetphysError, match="'X_fit'.*same number of stimuli"):
        m.fit([Xf[:, 0], Xf[:-1, 1]], Yf, [Xs[:, 0], Xs[:, 1]], Ys)
    m.fit(Xf, Yf, Xs, Ys)
    with pytest.raises(NetphysError, match="'candidates'.*non-empty"):
        m.scores(candidates=[])
    with pytest.raises(NetphysError, match="'candidates'.*not removed already"):
        m.scores(removed={1}, candidates=[1, 2])
    with pytest.raises(NetphysError, match="'candidates'.*filter indices in \\[0, 7\\]"):
        m.scores(candidates=[8])
    with pytest.raises(NetphysError, match="'X' parameter of DualRidgeRemoval.predict"):
        m.predict(Xs[:, :7])
    for c in range(7):
        m.remove(c)
    with pytest.raises(NetphysError, match="at least one filter must remain"):
        m.remove(7)
    with pytest.raises(NetphysError, match="'c'.*not removed already"):
        m.remove(0)
    with pytest.raises(NetphysError, match="'candidates'.*non-empty"):
        m.scores(removed=range(8))
    with pytest.raises(NetphysError, match="'tie_break'"):
        rar_path(Xf, Yf, Xs[:10], Ys[:10], Xs[10:], Ys[10:], 1.0, tie_break="middle")
    with pytest.raises(NetphysError, match="'n_keep'"):
        rar_path(Xf, Yf, Xs[:10], Ys[:10], Xs[10:], Ys[10:], 1.0, n_keep=0)
    with pytest.raises(NetphysError, match="'stop_ratio'"):
        rar_path(Xf, Yf, Xs[:10], Ys[:10], Xs[10:], Ys[10:], 1.0, stop_ratio=0.5)


# -------------------------------------------------------------------------------------------- benchmark
def test_bench_rar_small_agrees_and_reports_the_speed():
    from threadpoolctl import threadpool_limits

    small = bench_rar(n_fit=60, n_sel=40, C=12, HW=4, n_neurons=2)
    assert small["max_abs_dr"] < 1e-6
    with threadpool_limits(1):                                         # like for like: one thread each
        res = bench_rar(n_fit=300, n_sel=300, C=128, HW=16, n_neurons=1, repeats=1)
    assert res["max_abs_dr"] < 1e-6
    print(f"\nRAR iteration, C=128, X (300, 128, 4, 4): dual {res['dual_iter_s']:.3f} s "
          f"(+ {res['dual_setup_s']:.3f} s Gram blocks, once), sklearn Ridge per candidate "
          f"{res['sklearn_iter_s']:.3f} s; ratio {res['ratio']:.1f}x "
          f"({res['ratio_with_setup']:.1f}x with setup); max |dr| {res['max_abs_dr']:.1e}")
