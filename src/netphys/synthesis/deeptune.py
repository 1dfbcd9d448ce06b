"""DeepTune: regularised gradient ascent in pixel space, per model or as a consensus of many models.

``deeptune(objective)`` optimises one image per restart and condition (and per model when several
objectives are optimised separately) as one batched parameter tensor: every step is one forward and
one backward pass per objective over all searches. ``consensus="mean_grad"`` / ``"sign_agree"``
optimise one image per restart and condition against all objectives at once by aggregating their
gradients (the consensus DeepTune image of [1]_). :func:`stability` measures how reproducible the
images are (across restarts, across models, against the consensus) and their polar power spectra;
:func:`lambda_sweep` runs a grid of regularisation strengths.

References
----------
.. [1] Abbasi Asl R. (2018). "Interpretable Machine Learning with Applications in Neuroscience", PhD thesis,
   UC Berkeley, chapter 3 ("smooth DeepTune", consensus DeepTune, stability, PSD in polar coordinates).
"""
from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from .. import __version__
from .._random import spawn_seeds, torch_generator
from .._validation import check_choice, check_device, check_int, param_error
from .regularizers import gaussian_blur, jitter as _jitter, lp_norm, total_variation

log = logging.getLogger(__name__)

__all__ = ["deeptune", "default_lambdas", "lambda_sweep", "stability", "CONSENSUS", "OPTIMIZERS",
           "LAMBDA_P_DEVIATION", "LAMBDA_TV_FRACTION", "LAMBDA_RULE", "INIT_STD", "MAX_TRACE"]

#: Ways to combine the gradients of several objectives into one image (None: optimise each separately).
CONSENSUS = (None, "mean_grad", "sign_agree")
#: ``"adam"``: Adam on the pixels (default); ``"sgd"``: plain gradient ascent ``z <- z + lr * grad``.
OPTIMIZERS = ("adam", "sgd")
#: Pixel deviation from the image mean at which the default ``lambda_p`` makes the pull of ``R_p`` equal
#: the push of the objective (a quarter of the [0, 1] range: the optimum stays inside the box).
LAMBDA_P_DEVIATION = 0.25
#: Fraction of the objective's gradient that the default ``lambda_tv`` lets ``R_TV`` pull with on the
#: roughest image (a pixel checkerboard of amplitude LAMBDA_P_DEVIATION around mid-grey).
LAMBDA_TV_FRACTION = 0.25
#: The default rule, as stored in the results' attrs.
LAMBDA_RULE = (f"lambda_p = g / (p * delta**(p-1) * sqrt(N)), lambda_tv = tau * g / |grad TV^alpha(checker_delta)|, "
               f"delta = {LAMBDA_P_DEVIATION}, tau = {LAMBDA_TV_FRACTION}, g = mean over restarts of the per-image "
               f"L2 norm of the (aggregated) objective gradient at the initial images, N = pixels x channels "
               f"optimised; per condition (and per model without consensus)")
#: Standard deviation of the seeded Gaussian noise around mid-grey (0.5) that the images start from.
INIT_STD = 0.02
#: Score traces longer than this are subsampled (every ``ceil(steps / MAX_TRACE)``-th step is kept).
MAX_TRACE = 200

_EPS = 1e-12


# ---------------------------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------------------------
def _positive(value, param, func, *, low=0.0, open_=True, fix=None) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > low if open_ else value >= low
    if not ok:
        raise param_error(param, func, f"a finite number {'>' if open_ else '>='} {low:g}", value, fix)
    return float(value)


def _objective_list(objectives, func) -> tuple[list, bool]:
    single = not isinstance(objectives, (list, tuple))
    objs = [objectives] if single else list(objectives)
    if not objs:
        raise param_error("objectives", func, "an objective or a non-empty list of objectives", objectives)
    for i, o in enumerate(objs):
        if not callable(o):
            where = "" if single else f" (entry {i})"
            raise param_error("objectives", func, "an Objective or a callable images -> scores (n, K)",
                              f"{type(o).__name__}{where}")
    return objs, single


def _models_of(obj) -> list:
    leaves = getattr(obj, "_leaves", None)
    models = [getattr(leaf, "model", None) for leaf in leaves()] if callable(leaves) else []
    if not models and getattr(obj, "model", None) is not None:
        models = [obj.model]
    if not models and isinstance(obj, torch.nn.Module):
        models = [obj]
    return [m for m in models if isinstance(m, torch.nn.Module)]


def _module_device(m: torch.nn.Module):
    for t in list(m.parameters()) + list(m.buffers()):
        return t.device
    return None


def _default_device(objs) -> torch.device:
    for o in objs:
        for m in _models_of(o):
            dev = _module_device(m)
            if dev is not None:
                return dev
    return torch.device("cpu")


def _default_size(objs, func) -> int:
    from ..models.loading import model_info

    for o in objs:
        for m in _models_of(o):
            size = model_info(m).input_size
            if size:
                return int(size)
    raise param_error("image_size", func, "an int >= 2 when no objective reads a model with a known input size",
                      None, "pass image_size=... (e.g. the model's input size)")


def _describe(obj) -> str:
    from .evolve import _objective_info

    try:
        info = _objective_info(obj)
    except Exception:  # a user's callable with odd attributes: its repr is enough
        info = {"objective": repr(obj)}
    if "models" in info:
        return f"{info['objective']} on {', '.join(info['models'])}"
    return info["objective"]


def _names(obj, k) -> list:
    names = getattr(obj, "names", None)
    if names is not None and len(names) == k:
        return [str(x) for x in names]
    return [f"condition{i}" for i in range(k)]


# ---------------------------------------------------------------------------------------------------------
# the batched problem
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Problem:
    objs: list
    single: bool
    consensus: str | None
    direction: str
    R: int          # restarts
    K: int          # conditions
    M: int          # objectives
    Ms: int         # models with their own image (M without consensus, else 1)
    C: int          # optimised channels (1 grayscale, 3 colour)
    S: int
    device: torch.device
    k_of: torch.Tensor      # (B,) condition of each search
    m_of: torch.Tensor      # (B,) model of each search (0 with consensus)
    jitter: int
    jitter_gen: torch.Generator | None
    names: list

    @property
    def B(self) -> int:
        return self.R * self.K * self.Ms

    @property
    def sign(self) -> float:
        return 1.0 if self.direction == "max" else -1.0

    def images(self, z: torch.Tensor, *, jitter: bool = True) -> torch.Tensor:
        x = z.expand(-1, 3, -1, -1) if self.C == 1 else z
        if jitter and self.jitter:
            x = _jitter(x, self.jitter, self.jitter_gen)
        return x

    def where(self, b: int) -> str:
        r, rest = divmod(b, self.K * self.Ms)
        k, m = divmod(rest, self.Ms)
        s = f"restart {r}, condition {k} ({self.names[k]})"
        return s + (f", model {m}" if self.Ms > 1 else "")


def _scores(obj, x, k_expected, func, step, prob) -> torch.Tensor:
    s = obj(x)
    if not isinstance(s, torch.Tensor):
        s = torch.as_tensor(s)
    if s.dim() == 1:
        s = s[:, None]
    if s.dim() != 2 or s.shape[0] != x.shape[0] or (k_expected is not None and s.shape[1] != k_expected):
        want = f"scores (n, {k_expected})" if k_expected is not None else "scores (n, n_conditions)"
        raise param_error("objectives", func, f"callables returning {want}",
                          f"scores of shape {tuple(s.shape)} for {x.shape[0]} images",
                          "every objective must return one column per condition, the same count for all")
    s = s.to(prob.device if prob is not None else x.device, torch.float32)
    return s


def _check_finite(vals: torch.Tensor, what: str, func: str, step: int, prob: _Problem, m: int | None = None):
    bad = ~torch.isfinite(vals.detach())
    if bad.any():
        b = int(bad.reshape(bad.shape[0], -1).any(1).nonzero()[0, 0])
        obj = "" if m is None or prob.M == 1 else f" (objective {m})"
        raise param_error("objectives", func, f"objectives with finite {what}",
                          f"a non-finite {what[:-1]} at step {step} for {prob.where(b)}{obj}",
                          "check the objective (e.g. a log of a non-positive rate), or lower lr")


def _objective_gradient(prob: _Problem, z: torch.Tensor, func: str, step: int, *, jitter: bool = True):
    """Ascent direction of the objective part, (B, C, S, S), and the raw scores (B, M) (no regularisers)."""
    B = prob.B
    ar = torch.arange(B, device=prob.device)
    zz = z.detach().requires_grad_(True)
    x = prob.images(zz, jitter=jitter)
    if prob.consensus is None:
        scores = torch.empty(B, 1, device=prob.device)
        total = zz.new_zeros(())
        for m, obj in enumerate(prob.objs):
            idx = (prob.m_of == m).nonzero()[:, 0]
            s = _scores(obj, x[idx], prob.K, func, step, prob)
            own = s[torch.arange(idx.numel(), device=prob.device), prob.k_of[idx]]
            scores[idx, 0] = own.detach()
            total = total + own.sum()
        _check_finite(scores, "scores", func, step, prob)
        (g,) = torch.autograd.grad(prob.sign * total, zz)
        _check_finite(g, "gradients", func, step, prob)
        return g, scores
    grads, cols = [], []
    for m, obj in enumerate(prob.objs):
        s = _scores(obj, x, prob.K, func, step, prob)
        own = s[ar, prob.k_of]
        _check_finite(own, "scores", func, step, prob, m)
        (g,) = torch.autograd.grad(own.sum(), zz, retain_graph=m < prob.M - 1)
        _check_finite(g, "gradients", func, step, prob, m)
        grads.append(g)
        cols.append(own.detach())
    scores = torch.stack(cols, 1)
    gs = torch.stack(grads)                                                     # (M, B, C, S, S)
    norms = gs.flatten(2).norm(dim=2).clamp_min(_EPS)[:, :, None, None, None]
    agg = (gs / norms).mean(0)
    if prob.consensus == "sign_agree":
        sg = torch.sign(gs)
        agree = (sg == sg[:1]).all(0) & (sg[0] != 0)
        agg = agg * agree
    return prob.sign * agg, scores


def _setup(objectives, *, image_size, n_restarts, consensus, grayscale, direction, jitter, random_state,
           device, func) -> tuple[_Problem, torch.Tensor]:
    objs, single = _objective_list(objectives, func)
    check_choice(consensus, "consensus", func, CONSENSUS)
    check_choice(direction, "direction", func, ("max", "min"))
    n_restarts = check_int(n_restarts, "n_restarts", func, min_value=1)
    jitter = check_int(jitter, "jitter", func, min_value=0)
    if not isinstance(grayscale, bool):
        raise param_error("grayscale", func, "True or False", grayscale)
    dev = check_device(device, func)
    dev = _default_device(objs) if dev is None else dev
    S = _default_size(objs, func) if image_size is None else check_int(image_size, "image_size", func, min_value=2)
    init_seed, jitter_seed = spawn_seeds(random_state, 2)

    # condition count of every objective, from one mid-grey image
    probe = torch.full((1, 3, S, S), 0.5, device=dev)
    ks = []
    with torch.no_grad():
        for o in objs:
            ks.append(int(_scores(o, probe, None, func, 0, None).shape[1]))
    if len(set(ks)) != 1:
        raise param_error("objectives", func, "objectives with equal condition counts", f"condition counts {ks}",
                          "e.g. the same neurons' encoding models on several networks")
    K, M = ks[0], len(objs)
    Ms = M if consensus is None else 1
    C = 1 if grayscale else 3
    # one noise image per restart, shared by its conditions and models (differences are theirs, not the start's)
    g = torch_generator(init_seed, func)
    noise = torch.randn(n_restarts, 1, 1, C, S, S, generator=g) * INIT_STD
    z0 = (0.5 + noise).clamp(0.0, 1.0).expand(n_restarts, K, Ms, C, S, S).reshape(-1, C, S, S)
    z0 = z0.to(dev).contiguous()
    b = torch.arange(n_restarts * K * Ms, device=dev)
    prob = _Problem(objs=objs, single=single, consensus=consensus, direction=direction, R=n_restarts, K=K, M=M,
                    Ms=Ms, C=C, S=S, device=dev, k_of=(b // Ms) % K, m_of=b % Ms, jitter=jitter,
                    jitter_gen=torch_generator(jitter_seed, func) if jitter else None, names=_names(objs[0], K))
    return prob, z0


def _calibrated(prob: _Problem, z0: torch.Tensor, p: float, tv_alpha: float, func: str):
    """The default (lambda_p, lambda_tv), each (K, Ms), from the objective gradient at the initial images."""
    g, _ = _objective_gradient(prob, z0, func, 0, jitter=False)
    gn = g.flatten(1).norm(dim=1).reshape(prob.R, prob.K, prob.Ms).mean(0).double()      # (K, Ms)
    n = prob.C * prob.S * prob.S
    d = LAMBDA_P_DEVIATION
    lam_p = gn / (p * d ** (p - 1) * math.sqrt(n))
    ii = torch.arange(prob.S)
    checker = 0.5 + d * (1.0 - 2.0 * ((ii[:, None] + ii[None, :]) % 2)).double()
    checker = checker.expand(1, prob.C, prob.S, prob.S).clone().requires_grad_(True)
    (gtv,) = torch.autograd.grad(total_variation(checker, tv_alpha).sum(), checker)
    lam_tv = LAMBDA_TV_FRACTION * gn / float(gtv.norm())
    if not bool(torch.all(gn > 0)):
        k, m = (gn <= 0).nonzero()[0].tolist()
        log.warning("deeptune: the objective gradient is zero at the initial images for condition %d%s; "
                    "its default lambdas are 0 (pass lambda_p / lambda_tv to regularise it)",
                    k, f", model {m}" if prob.Ms > 1 else "")
    return lam_p.cpu().numpy(), lam_tv.cpu().numpy()


def _lambda_array(value, default, param, func, prob: _Problem) -> np.ndarray:
    if value is None:
        return default
    if isinstance(value, xr.DataArray):
        value = value.values
    arr = np.asarray(value, dtype=np.float64)
    if arr.dtype.kind not in "fiu" or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise param_error(param, func, "None (the default rule), a number >= 0 or an array of them", value)
    try:
        if arr.ndim == 1:
            arr = arr[:, None]                        # (K,) -> (K, 1): the same for every model
        return np.broadcast_to(arr, (prob.K, prob.Ms)).astype(np.float64).copy()
    except ValueError:
        shape = f"({prob.K},)" + (f" or ({prob.K}, {prob.Ms})" if prob.Ms > 1 else "")
        raise param_error(param, func, f"a number or an array of shape {shape} (condition[, model])",
                          f"shape {arr.shape}") from None


def default_lambdas(objectives, *, image_size=None, n_restarts: int = 4, p: float = 6, tv_alpha: float = 1,
                    consensus=None, grayscale: bool = False, direction: str = "max", random_state=0,
                    device=None) -> xr.Dataset:
    """The default ``lambda_p`` and ``lambda_tv`` that :func:`deeptune` would use (same arguments).

    Returns
    -------
    xarray.Dataset
        ``lambda_p``, ``lambda_tv`` (condition[, model]) and ``gradient_norm`` (condition[, model]), the
        mean per-image L2 norm of the objective gradient at the initial images; attrs: the rule.

    Notes
    -----
    See :func:`deeptune`, Notes, "Default lambdas".
    """
    func = "default_lambdas"
    p = _positive(p, "p", func, low=1.0, open_=False)
    tv_alpha = _positive(tv_alpha, "tv_alpha", func)
    prob, z0 = _setup(objectives, image_size=image_size, n_restarts=n_restarts, consensus=consensus,
                      grayscale=grayscale, direction=direction, jitter=0, random_state=random_state,
                      device=device, func=func)
    lp, ltv = _calibrated(prob, z0, p, tv_alpha, func)
    n = prob.C * prob.S * prob.S
    gn = lp * p * LAMBDA_P_DEVIATION ** (p - 1) * math.sqrt(n)
    dims, coords = _lambda_dims(prob)
    return xr.Dataset({"lambda_p": (dims, _squeeze_model(lp, prob)), "lambda_tv": (dims, _squeeze_model(ltv, prob)),
                       "gradient_norm": (dims, _squeeze_model(gn, prob))}, coords=coords,
                      attrs={"lambda_rule": LAMBDA_RULE, "p": p, "tv_alpha": tv_alpha, "image_size": prob.S,
                             "consensus": str(consensus), "grayscale": int(grayscale)})


def _lambda_dims(prob):
    coords = {"condition": np.arange(prob.K), "condition_name": ("condition", np.array(prob.names, dtype=str))}
    if prob.Ms > 1:
        coords["model"] = np.arange(prob.Ms)
        return ("condition", "model"), coords
    return ("condition",), coords


def _squeeze_model(a: np.ndarray, prob) -> np.ndarray:
    return a if prob.Ms > 1 else a[:, 0]


# ---------------------------------------------------------------------------------------------------------
# deeptune
# ---------------------------------------------------------------------------------------------------------
def deeptune(objectives, *, image_size: int | None = None, n_restarts: int = 4, p: float = 6, lambda_p=None,
             lambda_tv=None, tv_alpha: float = 1, steps: int = 200, lr: float = 0.01, optimizer: str = "adam",
             direction: str = "max", consensus: str | None = None, grayscale: bool = False, jitter: int = 0,
             blur: float = 0.0, random_state=0, device=None, progress: bool = False) -> xr.Dataset:
    """Smooth DeepTune images: regularised gradient ascent on the pixels of each condition's image.

    Parameters
    ----------
    objectives : Objective or callable, or a list of them
        ``images (n, 3, S, S) in [0, 1] -> scores (n, K)`` (differentiable), one column per condition;
        a list holds objectives with the same ``K`` (e.g. one neuron's encoding models on several
        networks). Scores are moved to ``device``.
    image_size : int, optional
        ``S``; default the input size of the first model an objective reads (``model_info``).
    n_restarts : int, default 4
        Independent initial images per condition.
    p : float, default 6
        Exponent of ``R_p`` (:func:`~netphys.synthesis.regularizers.lp_norm`), ``>= 1`` (6 in [1]_).
    lambda_p, lambda_tv : None, float or array (condition[, model])
        Weights of ``R_p`` and ``R_TV``; None uses the default rule (Notes). 0 switches a term off.
    tv_alpha : float, default 1
        Exponent ``alpha`` of ``R_TV`` (:func:`~netphys.synthesis.regularizers.total_variation`), ``> 0``.
    steps : int, default 200
        Gradient steps.
    lr : float, default 0.01
        Step size: for Adam about the largest change of a pixel per step (in ``[0, 1]`` units); for
        ``"sgd"`` the factor on the gradient.
    optimizer : {"adam", "sgd"}
        ``"sgd"``: plain gradient ascent ``z <- z + lr * grad J`` (the thesis's "regularized gradient
        ascent"); ``"adam"`` (default): Adam (Kingma & Ba 2015) on the same ``grad J``.
    direction : {"max", "min"}
        ``"min"`` finds non-preferred images (the objective enters ``J`` negated).
    consensus : {None, "mean_grad", "sign_agree"}
        How a list of objectives is combined; None optimises each objective separately (a ``model``
        dimension in the result). See Notes.
    grayscale : bool, default False
        Optimise one channel, shown to the objectives repeated on all three (as [1]_ presents grayscale
        stimuli to its CNNs); the regularisers then act on that one channel.
    jitter : int, default 0
        Largest random circular shift (pixels) applied to the images the objectives see at each step
        (:func:`~netphys.synthesis.regularizers.jitter`); 0 (off) as in [1]_.
    blur : float, default 0
        Standard deviation (pixels) of a Gaussian blur applied to the images after each step; 0 (off)
        as in [1]_.
    random_state : int, SeedSequence or Generator, default 0
        Seeds the initial images and the jitter (spawned streams).
    device : str or torch.device, optional
        Where the images live; default the device of the first model an objective reads, else CPU.
    progress : bool
        A tqdm bar over steps.

    Returns
    -------
    xarray.Dataset
        ``images`` (restart, condition[, model], channel, y, x): final images (3 channels, also when
        grayscale); ``score`` (restart, condition[, model], iteration): the objective's raw score at
        iteration ``t`` (the image after ``t`` steps; subsampled to at most :data:`MAX_TRACE` + 1
        points, the last ``t = steps``); ``final_score`` (restart, condition[, model]); ``final_lp`` and
        ``final_tv`` (restart, condition[, model]): ``R_p`` and ``R_TV`` of the final images (of the
        optimised channels); ``lambda_p``, ``lambda_tv`` (condition[, model]): the weights used;
        ``best_restart`` (condition[, model]) and ``best_image`` (condition[, model], channel, y, x): the
        restart with the best final score (with consensus: the best mean score over the objectives).
        The ``model`` dimension appears in the images with several objectives and ``consensus=None``
        and in the scores whenever there are several objectives (with consensus: each objective's score
        of the shared image). Coordinates ``condition_name`` and ``model_name``. attrs: every setting
        (method, p, tv_alpha, lambdas or the rule, steps, lr, optimizer, direction, consensus,
        grayscale, jitter, blur, init_std, random_state, trace_every, image_size), the objective
        descriptions and versions.

    Raises
    ------
    NetphysError
        ``steps``/``n_restarts`` < 1, ``lr <= 0``, ``p < 1``, ``tv_alpha <= 0``, negative lambdas, an unknown
        ``consensus``/``direction``/``optimizer``, objectives with different condition counts or scores
        of the wrong shape, and non-finite scores or gradients (naming the step, restart and condition).

    Notes
    -----
    **Objective** ([1]_, chapter 3): for each search, minimise over the image ``z``

    .. math:: -s\\,f(z) + \\lambda_p R_p(z) + \\lambda_{TV} R_{TV}(z), \\qquad
              R_p(z) = \\sum_i |z_i - \\bar z|^p, \\quad
              R_{TV}(z) = \\sum_{i,j} \\left((z_{i,j+1} - z_{i,j})^2 + (z_{i+1,j} - z_{i,j})^2\\right)^{\\alpha/2},

    with ``s = +1`` (``"max"``, preferred image) or ``-1`` (``"min"``, non-preferred image), ``p = 6``,
    ``alpha = 1``, i.e. gradient *ascent* on ``J = s f - lambda_p R_p - lambda_TV R_TV``. The images are
    the parameters themselves (pixel space), initialised at ``0.5 + N(0, INIT_STD^2)`` (one noise image
    per restart, shared by all conditions and models, clipped to [0, 1]). The box ``[0, 1]`` is kept by
    projection: after every update the pixels are clamped to ``[0, 1]`` (projected gradient ascent), so
    the objectives only ever see images in the box. ``R_p`` does not penalise the image mean (it is
    taken about the mean) and ``R_TV`` ignores it too, so an objective that rewards overall brightness
    moves the mean until the box stops it. The thesis says only "regularized
    gradient ascent ... until convergence" and gives no step size; ``optimizer="sgd"`` is that literal
    method, Adam (the default) ascends the same ``J`` with a per-pixel step of about ``lr`` whatever the
    scale of the objective's gradient, which differs by orders of magnitude between units and models.

    **Consensus** (several objectives ``f_1..f_M``, one image per restart and condition). The thesis
    aggregates "the gradient information from all 18 models" so that "the aggregated gradient keeps the
    stable parts of gradients and averages out the unstable parts" without giving the formula; here,
    with ``g_m = grad_z f_m(z)`` and ``u_m = g_m / ||g_m||_2`` (L2 norm over all pixels and channels of
    the image, so every model has the same say whatever its scale):

    * ``"mean_grad"``: the objective part of the ascent direction is ``s * mean_m u_m``;
    * ``"sign_agree"``: ``s * (mean_m u_m) * 1[sign(g_1) = ... = sign(g_M) != 0]`` per pixel: pixels
      where any two objectives' gradients disagree in sign (or one is 0) get no objective update.

    The regulariser gradients are added to this direction unmasked (they act on every pixel). The
    default lambdas are calibrated against the aggregated direction.

    **Default lambdas** (the thesis does not report its values). Let ``g`` be the per-image L2 norm of
    the objective's gradient (with consensus: of the aggregated direction) at the initial images,
    averaged over restarts, separately per condition (and per model without consensus), ``N`` the
    number of optimised values per image (``C S^2``) and ``delta =`` :data:`LAMBDA_P_DEVIATION`. Then

    .. math:: \\lambda_p = \\frac{g}{p\\,\\delta^{p-1}\\sqrt N}, \\qquad
              \\lambda_{TV} = \\tau \\frac{g}{\\|\\nabla R_{TV}(c_\\delta)\\|_2},

    where ``c_delta`` is the pixel checkerboard ``0.5 +- delta`` and ``tau =`` :data:`LAMBDA_TV_FRACTION`.
    Why: ``||grad R_p||_2 = p delta^(p-1) sqrt(N)`` when half the pixels lie at ``mean + delta`` and half
    at ``mean - delta``,
    so at that contrast the p-norm's pull balances the objective's push (for a linear unit ``<w, z>``
    the optimum is ``|z_i - mean| = delta (|w_i| / rms(w))^(1/(p-1))``: rms-sized weights give pixels at
    ``0.5 +- 0.25``, inside the box); and the TV pull on the roughest image is ``tau`` of the objective's
    push, enough to remove pixel noise that the objective is indifferent to but not features it
    drives. Both scale with the objective (a unit 100 times larger gets 100 times larger lambdas, the
    same image), with the image size (``sqrt(N)``) and with the intensity range (``delta``). A zero
    gradient at the start (a unit silent at mid-grey) gives zero default lambdas, with a warning.
    :func:`default_lambdas` returns them; :func:`lambda_sweep` explores multiples of them.

    Score traces are taken on the images the objectives see (jittered if ``jitter > 0``); the final
    score on the final images without jitter.

    References
    ----------
    .. [1] Abbasi Asl R. (2018). "Interpretable Machine Learning with Applications in Neuroscience", PhD
       thesis, UC Berkeley, chapter 3.
    .. [2] Kingma D. P., Ba J. (2015). "Adam: a method for stochastic optimization", ICLR.
    """
    func = "deeptune"
    steps = check_int(steps, "steps", func, min_value=1)
    lr = _positive(lr, "lr", func)
    p = _positive(p, "p", func, low=1.0, open_=False, fix="R_p needs p >= 1 (the thesis uses 6)")
    tv_alpha = _positive(tv_alpha, "tv_alpha", func)
    check_choice(optimizer, "optimizer", func, OPTIMIZERS)
    blur = _positive(blur, "blur", func, open_=False)
    prob, z0 = _setup(objectives, image_size=image_size, n_restarts=n_restarts, consensus=consensus,
                      grayscale=grayscale, direction=direction, jitter=jitter, random_state=random_state,
                      device=device, func=func)
    default_p = default_tv = None
    if lambda_p is None or lambda_tv is None:
        default_p, default_tv = _calibrated(prob, z0, p, tv_alpha, func)
    lam_p = _lambda_array(lambda_p, default_p, "lambda_p", func, prob)
    lam_tv = _lambda_array(lambda_tv, default_tv, "lambda_tv", func, prob)
    lp_b = torch.as_tensor(lam_p, dtype=torch.float32, device=prob.device)[prob.k_of, prob.m_of]
    ltv_b = torch.as_tensor(lam_tv, dtype=torch.float32, device=prob.device)[prob.k_of, prob.m_of]
    use_p, use_tv = bool(np.any(lam_p > 0)), bool(np.any(lam_tv > 0))

    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr) if optimizer == "adam" else torch.optim.SGD([z], lr=lr)
    every = max(1, math.ceil(steps / MAX_TRACE))
    trace_it, trace = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="deeptune", unit="step")
    try:
        for t in range(steps):
            g_obj, scores = _objective_gradient(prob, z, func, t)
            if t % every == 0:
                trace_it.append(t)
                trace.append(scores.double().cpu())
            direction_ = g_obj
            if use_p or use_tv:
                zr = z.detach().requires_grad_(True)
                reg = zr.new_zeros(())
                if use_p:
                    reg = reg + (lp_b * lp_norm(zr, p)).sum()
                if use_tv:
                    reg = reg + (ltv_b * total_variation(zr, tv_alpha)).sum()
                (g_reg,) = torch.autograd.grad(reg, zr)
                direction_ = direction_ - g_reg
            opt.zero_grad(set_to_none=True)
            z.grad = -direction_.to(z.dtype)           # the optimisers minimise: descend on -J
            opt.step()
            with torch.no_grad():
                if blur > 0:
                    z.copy_(gaussian_blur(z, blur))
                z.clamp_(0.0, 1.0)                      # projection onto the box [0, 1]
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    zf = z.detach()
    final = _final_scores(prob, zf, func, steps)
    trace_it.append(steps)
    trace.append(final.double().cpu())
    with torch.no_grad():
        f_lp = lp_norm(zf, p).double().cpu().numpy()
        f_tv = total_variation(zf, tv_alpha).double().cpu().numpy()
    settings = dict(p=p, tv_alpha=tv_alpha, steps=steps, lr=lr, optimizer=optimizer, direction=direction,
                    consensus=str(consensus), grayscale=int(grayscale), jitter=int(prob.jitter), blur=blur,
                    random_state=str(random_state), trace_every=every, image_size=prob.S, n_restarts=prob.R,
                    init_std=INIT_STD,
                    lambda_p=("default rule" if lambda_p is None else str(np.asarray(lambda_p).tolist())),
                    lambda_tv=("default rule" if lambda_tv is None else str(np.asarray(lambda_tv).tolist())))
    if lambda_p is None or lambda_tv is None:
        settings["lambda_rule"] = LAMBDA_RULE
    return _as_dataset(prob, zf, torch.stack(trace, -1).numpy(), np.asarray(trace_it), final.double().cpu().numpy(),
                       f_lp, f_tv, lam_p, lam_tv, settings)


def _final_scores(prob: _Problem, z: torch.Tensor, func: str, step: int) -> torch.Tensor:
    x = prob.images(z, jitter=False)
    with torch.no_grad():
        if prob.consensus is None:
            out = torch.empty(prob.B, 1, device=prob.device)
            for m, obj in enumerate(prob.objs):
                idx = (prob.m_of == m).nonzero()[:, 0]
                s = _scores(obj, x[idx], prob.K, func, step, prob)
                out[idx, 0] = s[torch.arange(idx.numel(), device=prob.device), prob.k_of[idx]]
        else:
            ar = torch.arange(prob.B, device=prob.device)
            out = torch.stack([_scores(o, x, prob.K, func, step, prob)[ar, prob.k_of] for o in prob.objs], 1)
    _check_finite(out, "scores", func, step, prob)
    return out


def _as_dataset(prob: _Problem, z, trace, trace_it, final, f_lp, f_tv, lam_p, lam_tv, settings) -> xr.Dataset:
    R, K, Ms, M, S = prob.R, prob.K, prob.Ms, prob.M, prob.S
    imgs = prob.images(z, jitter=False).cpu().numpy().astype(np.float32).reshape(R, K, Ms, 3, S, S)
    trace = trace.reshape(R, K, Ms, -1, trace.shape[-1])        # (R, K, Ms, 1 or M, T)
    final = final.reshape(R, K, Ms, -1)
    f_lp, f_tv = f_lp.reshape(R, K, Ms), f_tv.reshape(R, K, Ms)
    img_model = Ms > 1                                           # images carry a model dim
    score_model = M > 1                                          # scores carry a model dim
    if prob.consensus is None:
        trace, final = trace[:, :, :, 0], final[..., 0]         # (R, K, Ms, T), (R, K, Ms)
    else:
        trace, final = trace[:, :, 0], final[:, :, 0]           # (R, K, M, T), (R, K, M)
    if not img_model:
        imgs, f_lp, f_tv = imgs[:, :, 0], f_lp[:, :, 0], f_tv[:, :, 0]
    if not score_model:
        trace, final = trace[:, :, 0], final[:, :, 0]
    # best restart: by the final score (with consensus, its mean over the objectives)
    key = final if prob.consensus is None or not score_model else final.mean(axis=2)
    best_r = key.argmax(0) if prob.direction == "max" else key.argmin(0)        # (K[, Ms])
    if img_model:
        kk, mm = np.meshgrid(np.arange(K), np.arange(Ms), indexing="ij")
        best_img = imgs[best_r, kk, mm]
    else:
        best_img = imgs[best_r, np.arange(K)]
    idims = ("restart", "condition") + (("model",) if img_model else ())
    sdims = ("restart", "condition") + (("model",) if score_model else ())
    ldims = ("condition",) + (("model",) if img_model else ())
    pix = ("channel", "y", "x")
    data = {
        "images": (idims + pix, imgs),
        "score": (sdims + ("iteration",), trace),
        "final_score": (sdims, final),
        "final_lp": (idims, f_lp),
        "final_tv": (idims, f_tv),
        "lambda_p": (ldims, lam_p if img_model else lam_p[:, 0]),
        "lambda_tv": (ldims, lam_tv if img_model else lam_tv[:, 0]),
        "best_restart": (ldims, best_r.astype(np.int64)),
        "best_image": (ldims + pix, best_img),
    }
    descriptions = [_describe(o) for o in prob.objs]
    coords = {"restart": np.arange(R), "condition": np.arange(K),
              "condition_name": ("condition", np.array(prob.names, dtype=str)),
              "iteration": np.asarray(trace_it, dtype=np.int64),
              "channel": np.arange(3), "y": np.arange(S), "x": np.arange(S)}
    if score_model:
        coords["model"] = np.arange(M)
        coords["model_name"] = ("model", np.array(descriptions, dtype=str))
    attrs = {"method": "deeptune", **settings, "n_objectives": M, "lambda_p_mean": float(np.mean(lam_p)),
             "lambda_tv_mean": float(np.mean(lam_tv)), "netphys_version": __version__,
             "torch_version": str(torch.__version__)}
    for i, d in enumerate(descriptions):
        attrs["objective" if M == 1 else f"objective_{i}"] = d
    return xr.Dataset(data, coords=coords, attrs=attrs)


# ---------------------------------------------------------------------------------------------------------
# lambda sweep
# ---------------------------------------------------------------------------------------------------------
def lambda_sweep(objectives, *, lambdas_p=(0.0, 0.3, 1.0, 3.0), lambdas_tv=(0.0, 0.3, 1.0, 3.0),
                 relative: bool = True, **kwargs) -> xr.Dataset:
    """DeepTune on a grid of regularisation weights: scores, regulariser values and images per cell.

    Parameters
    ----------
    objectives : as in :func:`deeptune`
    lambdas_p, lambdas_tv : sequence of float >= 0
        The grid. With ``relative=True`` (default) multiples of the default lambdas (:func:`default_lambdas`,
        so 1 is the default and 0 switches a term off); with ``relative=False`` absolute weights.
    relative : bool
    **kwargs
        Any other :func:`deeptune` argument (``steps``, ``n_restarts``, ``p``, ``tv_alpha``,
        ``consensus``, ``random_state``, ...); ``lambda_p``/``lambda_tv`` are set by the grid.

    Returns
    -------
    xarray.Dataset
        The :func:`deeptune` variables with two leading dimensions ``p_weight`` and ``tv_weight`` (the
        grid values as coordinates): ``images``, ``score``, ``final_score``, ``final_lp``, ``final_tv``,
        ``lambda_p`` and ``lambda_tv`` (the absolute weights used), ``best_image``, ... ; attrs those of
        the runs plus ``relative``.

    Raises
    ------
    NetphysError
        A grid value that is negative or not finite, an empty grid, ``lambda_p``/``lambda_tv`` in
        ``kwargs``, and whatever :func:`deeptune` raises.

    Notes
    -----
    Every cell starts from the same initial images (the same ``random_state``), so the differences
    between cells are due to the weights alone. Runs ``len(lambdas_p) * len(lambdas_tv)`` optimisations.
    """
    func = "lambda_sweep"
    for name in ("lambda_p", "lambda_tv"):
        if name in kwargs:
            raise param_error(name, func, "left to the grid", kwargs[name], "use lambdas_p / lambdas_tv")
    grids = []
    for name, grid in (("lambdas_p", lambdas_p), ("lambdas_tv", lambdas_tv)):
        arr = np.atleast_1d(np.asarray(grid, dtype=np.float64)) if np.ndim(grid) <= 1 else None
        if arr is None or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise param_error(name, func, "a non-empty sequence of finite numbers >= 0", grid)
        grids.append(arr)
    if not isinstance(relative, bool):
        raise param_error("relative", func, "True or False", relative)
    base_p = base_tv = 1.0
    if relative:
        keys = ("image_size", "n_restarts", "p", "tv_alpha", "consensus", "grayscale", "direction",
                "random_state", "device")
        d = default_lambdas(objectives, **{k: v for k, v in kwargs.items() if k in keys})
        base_p, base_tv = d.lambda_p.values, d.lambda_tv.values
    rows = []
    for a in grids[0]:
        row = [deeptune(objectives, lambda_p=a * base_p, lambda_tv=b * base_tv, **kwargs) for b in grids[1]]
        rows.append(xr.concat(row, dim="tv_weight", combine_attrs="drop_conflicts"))
    out = xr.concat(rows, dim="p_weight", combine_attrs="drop_conflicts")
    out = out.assign_coords(p_weight=grids[0], tv_weight=grids[1])
    out.attrs.update(method="lambda_sweep", relative=int(relative))
    for k in ("lambda_p", "lambda_tv"):
        out.attrs.pop(k, None)
    return out


# ---------------------------------------------------------------------------------------------------------
# stability and spectra
# ---------------------------------------------------------------------------------------------------------
def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis (broadcast); NaN where an image is constant."""
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    num = (a * b).sum(-1)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _nanmean(a: np.ndarray, axis) -> np.ndarray:
    """np.nanmean without the all-NaN warning (all-NaN slices give NaN)."""
    ok = ~np.isnan(a)
    n = ok.sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, a, 0.0).sum(axis) / np.maximum(n, 1), np.nan)


def _offdiag_mean(c: np.ndarray) -> np.ndarray:
    """Mean of the off-diagonal entries of the trailing (n, n) matrices (NaN for n = 1)."""
    n = c.shape[-1]
    if n < 2:
        return np.full(c.shape[:-2], np.nan)
    return _nanmean(c[..., ~np.eye(n, dtype=bool)], -1)


def _polar_psd(lum: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Power of the Hann-tapered, mean-free images ``(..., S, S)`` binned by orientation and frequency.

    Returns ``(P (..., n_bins, S // 2), orientation centres (deg), sf (cycles/image))``.
    """
    h, w = lum.shape[-2:]
    win = np.outer(np.hanning(h + 2)[1:-1], np.hanning(w + 2)[1:-1])
    mw = (lum * win).sum((-2, -1), keepdims=True) / win.sum()
    spec = np.abs(np.fft.fft2((lum - mw) * win)) ** 2
    fr = np.fft.fftfreq(h)[:, None] * np.ones((1, w))
    fc = np.ones((h, 1)) * np.fft.fftfreq(w)[None, :]
    cyc = np.hypot(fr * h, fc * w) if h == w else np.hypot(fr, fc) * min(h, w)
    ring = np.rint(cyc).astype(np.int64)                       # cycles per image, integer rings
    theta = np.degrees(np.arctan2(-fr, fc)) % 180.0            # the features module's convention
    width = 180.0 / n_bins
    obin = np.floor((theta + width / 2) / width).astype(np.int64) % n_bins   # bins centred on k * width
    n_sf = min(h, w) // 2
    keep = (ring >= 1) & (ring <= n_sf)
    flat_idx = (obin * n_sf + (ring - 1))[keep]
    lead = spec.shape[:-2]
    vals = spec.reshape(-1, h * w)[:, keep.ravel()]
    out = np.zeros((vals.shape[0], n_bins * n_sf))
    for i in range(vals.shape[0]):
        out[i] = np.bincount(flat_idx, weights=vals[i], minlength=n_bins * n_sf)
    return out.reshape(*lead, n_bins, n_sf), np.arange(n_bins) * width, np.arange(1, n_sf + 1, dtype=float)


def stability(result: xr.Dataset, consensus: xr.Dataset | None = None, *, n_angles: int = 36,
              n_orientation_bins: int = 12) -> xr.Dataset:
    """How reproducible DeepTune images are, and their power spectra in polar coordinates.

    Parameters
    ----------
    result : xarray.Dataset
        From :func:`deeptune` (``images`` with dims restart, condition[, model], channel, y, x).
    consensus : xarray.Dataset, optional
        A :func:`deeptune` result with ``consensus="mean_grad"``/``"sign_agree"`` over the same
        conditions (and image size), whose images every image of ``result`` is compared with. None:
        with a ``model`` dimension, the pixel-wise mean image over the models stands in for it.
    n_angles : int, default 36
        Angles of the orientation power (:func:`netphys.features.angular_power`, 5 degree steps).
    n_orientation_bins : int, default 12
        Orientation bins (15 degrees) of the 2-D polar power spectrum.

    Returns
    -------
    xarray.Dataset
        * ``restart_corr`` (condition[, model], restart, restart_b): Pearson r between the images of
          two restarts (over all pixels and channels); ``restart_similarity`` (condition[, model]): its
          mean off-diagonal value;
        * with a model dimension: ``model_corr`` (restart, condition, model, model_b) and
          ``model_similarity`` (condition): the same between models, per restart (the models share each
          restart's initial image);
        * ``consensus_corr`` (restart, condition[, model]) when there is a consensus image: r between
          each image and the consensus image of the same restart (its best image when the restart counts
          differ); ``consensus_similarity`` (condition[, model]): mean over restarts;
        * ``orientation_power`` (restart, condition[, model], orientation): the angular power of the
          luminance (channel mean) from :func:`netphys.features.angular_power` (Hann window; angle of
          the luminance gradient, degrees in [0, 180)); ``sf_power`` (..., sf) and ``polar_power``
          (..., orientation_bin, sf): the power ``|FFT|^2`` of the Hann-tapered, mean-free luminance
          summed over integer rings of spatial frequency (cycles per image, 1 to S/2) and, for the polar
          map, over orientation bins centred on ``0, 180/n, ...`` degrees (same angle convention).
          The same three for the consensus images (``consensus_orientation_power``, ...) when given.

    Raises
    ------
    NetphysError
        ``result`` (or ``consensus``) without ``images``, mismatched conditions or image sizes.

    Notes
    -----
    [1]_ measures stability as the correlation coefficient between DeepTune images of different models
    (Figure 3.3-G: each of 18 models' image against the consensus image) and inspects the power spectral
    density in polar coordinates (orientation, spatial frequency in cycles per receptive field; here
    per image, the image being the receptive field).

    References
    ----------
    .. [1] Abbasi Asl R. (2018). "Interpretable Machine Learning with Applications in Neuroscience", PhD
       thesis, UC Berkeley, chapter 3.
    """
    from ..features import angle_grid, angular_power

    func = "stability"
    if not isinstance(result, xr.Dataset) or "images" not in result:
        raise param_error("result", func, "a deeptune result (an xarray.Dataset with 'images')",
                          type(result).__name__)
    n_angles = check_int(n_angles, "n_angles", func, min_value=2)
    n_orientation_bins = check_int(n_orientation_bins, "n_orientation_bins", func, min_value=1)
    imgs = result["images"]
    has_model = "model" in imgs.dims
    lead = ["restart", "condition"] + (["model"] if has_model else [])
    if set(imgs.dims) != set(lead) | {"channel", "y", "x"}:
        raise param_error("result", func, "a deeptune result (images with dims restart, condition[, model], "
                          "channel, y, x)", f"images with dims {imgs.dims}",
                          "select one cell of a lambda_sweep first, e.g. .isel(p_weight=0, tv_weight=1)")
    imgs = imgs.transpose(*lead, "channel", "y", "x")
    flat = imgs.values.reshape(*imgs.shape[:-3], -1).astype(np.float64)
    R = imgs.sizes["restart"]
    data, coords = {}, {k: result.coords[k] for k in ("restart", "condition", "condition_name", "model", "model_name")
                        if k in result.coords}

    # across restarts: (restart, condition[, model], P) -> (condition[, model], restart, restart_b)
    a = np.moveaxis(flat, 0, -2)                                     # (condition[, model], R, P)
    rc = _pearson(a[..., :, None, :], a[..., None, :, :])
    other = tuple(d for d in lead if d != "restart")
    data["restart_corr"] = (other + ("restart", "restart_b"), rc)
    data["restart_similarity"] = (other, _offdiag_mean(rc))
    coords["restart_b"] = np.arange(R)

    if has_model:
        mi = lead.index("model")
        b = np.moveaxis(flat, mi, -2)                                # (restart, condition, M, P)
        mc = _pearson(b[..., :, None, :], b[..., None, :, :])
        data["model_corr"] = (("restart", "condition", "model", "model_b"), mc)
        data["model_similarity"] = (("condition",), _nanmean(_offdiag_mean(mc), 0))
        coords["model_b"] = np.arange(mc.shape[-1])

    cons_flat = None
    cons_imgs = None
    if consensus is not None:
        if not isinstance(consensus, xr.Dataset) or "images" not in consensus:
            raise param_error("consensus", func, "a deeptune result (an xarray.Dataset with 'images')",
                              type(consensus).__name__)
        ci = consensus["images"]
        if "model" in ci.dims:
            raise param_error("consensus", func, "a consensus deeptune result (images without a model dimension)",
                              f"images with dims {ci.dims}", "run deeptune(..., consensus='mean_grad')")
        if ci.sizes["condition"] != imgs.sizes["condition"] or ci.sizes["y"] != imgs.sizes["y"]:
            raise param_error("consensus", func, f"a result with {imgs.sizes['condition']} conditions of "
                              f"{imgs.sizes['y']} px", f"{ci.sizes['condition']} conditions of {ci.sizes['y']} px")
        ci = ci.transpose("restart", "condition", "channel", "y", "x")
        if ci.sizes["restart"] == R:
            cons_imgs = ci.values
        else:
            best = consensus["best_image"].transpose("condition", "channel", "y", "x").values
            cons_imgs = np.broadcast_to(best[None], (R,) + best.shape)
    elif has_model:
        cons_imgs = imgs.mean("model").transpose("restart", "condition", "channel", "y", "x").values
    if cons_imgs is not None:
        cf = cons_imgs.reshape(*cons_imgs.shape[:2], -1).astype(np.float64)
        cons_flat = cf[:, :, None, :] if has_model else cf
        cc = _pearson(flat, cons_flat)
        data["consensus_corr"] = (tuple(lead), cc)
        data["consensus_similarity"] = (other, _nanmean(cc, 0))

    # spectra of the luminance
    lum = imgs.values.astype(np.float64).mean(axis=-3)                 # (..., S, S)
    ang = angular_power(torch.from_numpy(lum), n_angles=n_angles).numpy()
    psd, ocent, sf = _polar_psd(lum, n_orientation_bins)
    data["orientation_power"] = (tuple(lead) + ("orientation",), ang)
    data["polar_power"] = (tuple(lead) + ("orientation_bin", "sf"), psd)
    data["sf_power"] = (tuple(lead) + ("sf",), psd.sum(-2))
    if consensus is not None:
        clum = cons_imgs.astype(np.float64).mean(axis=-3)
        cpsd, _, _ = _polar_psd(clum, n_orientation_bins)
        data["consensus_orientation_power"] = (("restart", "condition", "orientation"),
                                               angular_power(torch.from_numpy(np.ascontiguousarray(clum)),
                                                             n_angles=n_angles).numpy())
        data["consensus_polar_power"] = (("restart", "condition", "orientation_bin", "sf"), cpsd)
        data["consensus_sf_power"] = (("restart", "condition", "sf"), cpsd.sum(-2))
    coords.update(orientation=angle_grid(n_angles), orientation_bin=ocent, sf=sf)
    attrs = {"method": "deeptune_stability", "consensus_source": ("deeptune consensus" if consensus is not None
                                                                  else "mean over models" if has_model else "none"),
             "sf_units": "cycles per image", "orientation_units": "degrees (luminance gradient direction)",
             "n_angles": n_angles, "n_orientation_bins": n_orientation_bins,
             "deeptune_consensus": str(result.attrs.get("consensus", "")), "netphys_version": __version__}
    return xr.Dataset(data, coords=coords, attrs=attrs)
