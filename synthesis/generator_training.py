"""Training of :class:`~foscat_core.synthesis.Generator` (``Generator.fit`` is the user's reference).

The loss
--------
The target statistics ``ref`` are ``scat_op.eval(target, norm=norm)`` (``norm="self"`` by
default) averaged over the target maps (or the statistics given). Each step draws ``B`` noise samples, generates maps ``x_b`` and
evaluates ``s_b = scat_op.eval(x_b, norm=ref.norm)``. The distance of one set of statistics to the
reference is, per coefficient family ``S0, S1, S2, S3, S4``, the mean over its entries of
``|s - ref|**2 / scale**2``, summed over the families:

- ``S0`` (mean, variance): scaled by the target's standard deviation and variance;
- ``S1``, ``S2``: relative errors (scale ``|ref|``);
- ``S3``, ``S4``: with ``norm="self"`` (the default for map targets) they are already
  dimensionless ratios: absolute errors; without a norm, scaled as ``norm="self"`` would divide
  them (``sqrt(S2 S2)`` of the reference at the scale pair).

Each family weighs the same whatever its number of entries (S4 has thousands, S0 two).

``match="sample"`` (the default) averages the distance of every generated map: each sample must
carry the target's statistics on its own, the microcanonical analogue of an L-BFGS synthesis
(which constrains one map at a time). ``match="batch"`` compares the batch's mean statistics:
a canonical match, looser per map. ``match="both"`` adds the two: the per-sample distance is the
squared bias of the samples' statistics plus their scatter, and the batch term weighs the bias
once more (the scatter of coefficients with few modes, the largest scales, otherwise pulls their
mean off the target's). Neither rewards variety by itself -- a network that ignores its
noise and always draws the same good map is a minimum of both -- so a decorrelation term is
added: ``diversity * mean_{b != b'} corr(x_b, x_b')**2``, the squared Pearson correlation over
cells between two samples of the batch. Independent samples of a field with few large-scale
modes still correlate by chance (``corr**2 ~ 1 / N_modes``), so the term cannot be driven to 0;
it only pushes away from copies.

Scattering coefficients constrain the one-point distribution (the histogram of the pixel
values) only weakly -- with ``norm="self"`` the sign of the skewness hardly shows -- so for map
targets a one-point term is added: ``one_point * mean_b mean_n (sort(x_b)_n - q_n)**2 / var``,
the squared 1-D Wasserstein-2 distance between each generated map's values and the target's
(``q``: the target's sorted values, averaged over the target maps; ``var``: their variance).
Sorting is differentiable (the gradient flows to the cell that holds each rank), in torch and in
TensorFlow alike. With ``mask`` it runs over the cells any mask row weighs (> 0).

The one-point term weighs the extreme tails little (a few cells of thousands), so a moments term
matches each map's skewness and excess kurtosis to the target's (``moments``, relative squared
errors; the marginal moments of Portilla & Simoncelli's texture statistics). And the scattering
coefficients constrain octave band powers only loosely (20-50% off in a trained generator): the
``spectrum`` term matches band powers per map (log ratios; exact harmonic projections for ell < 16,
Haar details above, see :mod:`foscat_core.synthesis.generator_spectrum`). They default to weights
1 (spectrum) and 3 (moments) for map targets, 0 for statistics targets (which carry neither).
"""

import time

import numpy as np
from tqdm.auto import tqdm

from foscat_core._validation import check_positive_int
from foscat_core.backends import get_backend
from foscat_core.nn.optimizers import check_hyper, resolve_schedule, scheduled_lr
from foscat_core.nn.training import persistent_optimizer
from foscat_core.scattering.statistics import ScatteringStatistics

from .generator_spectrum import BandPowers, spectrum_distance
from .histogram import quantile_distance, target_quantiles

MATCHES = ("sample", "batch", "both")
FAMILY = {"S0": "S0", "S1": "S1", "S2": "S2", "S3": "S3", "S3P": "S3", "S4": "S4"}


def operator_backend(scat_op):
    """The plain backend object of a scattering operator (``TypeError`` if it has none)."""
    bk = getattr(scat_op, "_bk", None)
    if bk is None:
        wrapped = getattr(scat_op, "backend", None)
        bk = getattr(wrapped, "raw", wrapped)
    if not hasattr(scat_op, "eval") or not hasattr(bk, "name"):
        raise TypeError(f"scat_op must be a scattering operator (foscat_core.scattering.funct), got {type(scat_op).__name__}")
    return bk


def check_operator(gen, scat_op):
    bk = operator_backend(scat_op)
    if bk.name != gen.backend.name or str(bk.device) != str(gen.backend.device):
        raise ValueError(f"scat_op runs on the {bk.name!r} backend ({bk.device}) but the generator on "
                         f"{gen.backend.name!r} ({gen.backend.device}); build the operator with "
                         f"backend={gen.backend.name!r} so gradients can flow through it")
    if not gen.backend.has_autograd:
        raise NotImplementedError(f"the {gen.backend.name!r} backend has no automatic differentiation, so it cannot "
                                  "train; build the generator with backend='torch' or 'tensorflow' (a saved "
                                  "generator loads on numpy for sampling)")
    return bk


def domain_kwargs(gen):
    """How ``scat_op.eval`` is told the generator's domain (its ids and ordering)."""
    kwargs = {"nside": gen.nside, "nest": gen.nest}
    if gen.cell_ids is not None:
        kwargs["cell_ids"] = gen.cell_ids
    return kwargs


def reference(gen, target, scat_op, mask, norm="self"):
    """``(ref statistics of batch 1 on the operator's backend, norm, maps)`` from maps (float64
    (B, N_cells), returned as ``maps``) or statistics (``maps`` None)."""
    bk = operator_backend(scat_op)
    dtype = getattr(scat_op, "all_type", "float64")
    if isinstance(target, ScatteringStatistics):
        if target.cross:
            raise ValueError("target statistics must be auto statistics (scat_op.eval(x)), got cross statistics")
        ref = target.mean_batch() if int(next(iter(target._c.values())).shape[0]) > 1 else target
        return ref.to_backend(bk, dtype=dtype), target.norm, None
    if bk.is_native(target) or gen.backend.is_native(target):
        target = bk.to_numpy(target)
    try:
        maps = np.asarray(target, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"target must be maps (N_cells,) / (B, N_cells) or ScatteringStatistics, got "
                        f"{type(target).__name__}") from err
    if maps.ndim == 1:
        maps = maps[None]
    if maps.ndim != 2 or maps.shape[1] != gen.n_cells or maps.shape[0] == 0:
        raise ValueError(f"target must have shape (N_cells,) or (B, N_cells) with N_cells={gen.n_cells} (the "
                         f"generator's domain), got shape {np.shape(target)}")
    if not np.all(np.isfinite(maps)):
        raise ValueError("target contains NaN or infinite values; give those cells weight 0 in mask= and any finite value")
    stats = scat_op.eval(maps, norm=norm, mask=mask, **domain_kwargs(gen))
    return stats.mean_batch(), norm, maps


def one_point_reference(maps, mask, n_cells):
    """``(cells or None, quantiles (n,), variance)``: the target maps' sorted values over the cells
    a mask row weighs (all cells without mask), averaged over the maps, and their variance."""
    cells = None
    if mask is not None:
        m = np.asarray(mask, dtype=np.float64).reshape(-1, n_cells)
        cells = np.flatnonzero(m.max(axis=0) > 0)
        maps = maps[:, cells]
    q, var = target_quantiles(maps, maps.shape[1])
    return cells, q, var


def one_point_distance(xp, x, cells, quantiles, inv_var):
    """Mean over maps of the squared 1-D Wasserstein-2 distance of ``x`` (B, N) to the quantiles."""
    if cells is not None:
        x = xp.take(x, cells, axis=1)
    return quantile_distance(xp, x, quantiles, inv_var)


def standard_moments(xp, x):
    """Per map (rows of x), skewness and excess kurtosis: two (B,) arrays."""
    d = x - xp.mean(x, axis=1, keepdims=True)
    d2 = d * d
    v = xp.mean(d2, axis=1)
    return xp.mean(d2 * d, axis=1) / (v * xp.sqrt(v) + 1e-30), xp.mean(d2 * d2, axis=1) / (v * v + 1e-30) - 3.0


def moments_distance(xp, x, cells, skew, kurt):
    """Mean over maps of ``(skew_b - skew)**2 / (1 + skew**2) + (kurt_b - kurt)**2 / (1 + kurt**2)``."""
    if cells is not None:
        x = xp.take(x, cells, axis=1)
    s3, k4 = standard_moments(xp, x)
    return xp.mean((s3 - skew) ** 2) / (1.0 + skew**2) + xp.mean((k4 - kurt) ** 2) / (1.0 + kurt**2)


def scales(ref):
    """Per coefficient, host weights ``1 / scale**2`` shaped like the coefficient (without its
    complex pair axis), batch axis 1; see the module docstring."""
    host = {name: np.asarray(ref.backend.to_numpy(ref[name]), dtype=np.float64) for name in ref.names}
    s2 = host["S2"]
    if ref.is_complex("S2"):
        raise ValueError("target statistics must be auto statistics (real S2)")
    tiny = 1e-30
    out = {}
    for name, a in host.items():
        if name == "S0":
            var = np.maximum(a[..., 1], tiny)
            scale = np.stack([np.sqrt(var), var], axis=-1)
        elif name in ("S1", "S2"):
            scale = np.abs(a)
            scale = np.maximum(scale, 1e-6 * scale.max() + tiny)
        elif ref.norm is not None:
            scale = np.ones(a.shape[:-1])
        elif name in ("S3", "S3P"):
            j = ref.j2_j3
            scale = np.sqrt(s2[:, :, j[:, 0], :, None] * s2[:, :, j[:, 1], None, :])
        else:  # S4
            j = ref.j1_j2_j3
            scale = np.sqrt(s2[:, :, j[:, 0], :, None, None] * s2[:, :, j[:, 1], None, :, None])
            scale = np.broadcast_to(scale, a.shape[:-1])
        out[name] = 1.0 / np.maximum(scale, tiny) ** 2
    return out


def distance_terms(xp, stats, ref, weights):
    """Per-sample distance (B,) of ``stats`` to ``ref``: sum over families of the weighted mean."""
    d2 = (stats - ref) ** 2
    families = {}
    for name in d2.names:
        a = d2[name] * weights[name]
        b = int(a.shape[0])
        per_sample = xp.mean(xp.reshape(a, (b, -1)), axis=1)
        families.setdefault(FAMILY[name], []).append(per_sample)
    total = None
    for parts in families.values():
        term = parts[0] if len(parts) == 1 else sum(parts[1:], parts[0]) / len(parts)
        total = term if total is None else total + term
    return total


def decorrelation(xp, x):
    """Mean over pairs ``b != b'`` of the squared correlation of maps ``x`` (B, N) over cells."""
    b = int(x.shape[0])
    xc = x - xp.mean(x, axis=1, keepdims=True)
    u = xc / xp.sqrt(xp.sum(xc * xc, axis=1, keepdims=True) + 1e-12)
    c = xp.matmul(u, xp.permute_dims(u, (1, 0)))
    diag = xp.sum(u * u, axis=1)
    return (xp.sum(c * c) - xp.sum(diag * diag)) / (b * (b - 1))


def make_objective(gen, scat_op, ref, norm, match, diversity, mask, one_point=0.0, maps=None, spectrum=0.0,
                   moments=0.0):
    """``parts(x) -> {"total", "distance", "decorrelation", "one_point", "spectrum", "moments"}`` (backend
    scalars; ``None`` for a term that does not apply) on generated maps x (B, N_cells)."""
    bk = operator_backend(scat_op)
    xp = bk.xp
    op_dtype = getattr(scat_op, "all_type", gen.dtype)
    weights = {name: bk.asarray(w, dtype=op_dtype) for name, w in scales(ref).items()}
    kwargs = domain_kwargs(gen)
    if moments:
        host = get_backend("numpy")
        m_cells, _, _ = one_point_reference(maps, mask, gen.n_cells)
        s3, k4 = standard_moments(host.xp, maps if m_cells is None else maps[:, m_cells])
        m_skew, m_kurt = float(np.mean(s3)), float(np.mean(k4))
        m_cells = None if m_cells is None else gen.backend.asarray(m_cells, dtype="int64")
    if one_point:
        cells, q, var = one_point_reference(maps, mask, gen.n_cells)
        cells = None if cells is None else gen.backend.asarray(cells, dtype="int64")
        q = gen.backend.asarray(q, dtype=gen.dtype)
    if spectrum:
        bands = BandPowers(gen.nside, gen.nested_ids, gen.n_cells)
        host = get_backend("numpy")
        log_ref = np.log(np.mean(host.to_numpy(bands.energies(host.xp, maps)), axis=0) + 1e-30)
        log_ref = gen.backend.asarray(log_ref, dtype=gen.dtype)
        bands = bands.to(gen.backend, gen.dtype)

    def parts(x):
        xs = x if op_dtype == gen.dtype else xp.astype(x, bk.dtype(op_dtype))
        stats = scat_op.eval(xs, norm=norm, mask=mask, **kwargs)
        if match == "batch":
            stats = stats.mean_batch()
        dist = xp.mean(distance_terms(xp, stats, ref, weights))
        if match == "both":  # + the batch mean's distance: the bias of the samples counts twice
            dist = dist + distance_terms(xp, stats.mean_batch(), ref, weights)[0]
        dec = decorrelation(xp, x) if int(x.shape[0]) > 1 else None
        total = dist if (dec is None or diversity == 0) else dist + diversity * xp.astype(dec, dist.dtype)
        w1d = one_point_distance(xp, x, cells, q, 1.0 / var) if one_point else None
        if w1d is not None:
            total = total + one_point * xp.astype(w1d, dist.dtype)
        spec = spectrum_distance(xp, bands.energies(xp, x), log_ref) if spectrum else None
        if spec is not None:
            total = total + spectrum * xp.astype(spec, dist.dtype)
        mom = moments_distance(xp, x, m_cells, m_skew, m_kurt) if moments else None
        if mom is not None:
            total = total + moments * xp.astype(mom, dist.dtype)
        return {"total": total, "distance": dist, "decorrelation": dec, "one_point": w1d, "spectrum": spec,
                "moments": mom}

    return parts


DEFAULT_WEIGHTS = {"one_point": 1.0, "spectrum": 1.0, "moments": 3.0}
# Terms on the one-point distribution, which output="quantile" matches exactly (their default is then 0).
ONE_POINT_TERMS = ("one_point", "moments")


def check_map_term(weight, name, target_is_maps, quantile_output=False):
    """The weight of a term read off the target maps: ``None`` -> ``DEFAULT_WEIGHTS[name]`` for
    map targets, 0 for statistics targets (which carry no pixel values; a positive weight is then
    a ValueError) and for the one-point terms of a quantile output."""
    if weight is None:
        off = not target_is_maps or (quantile_output and name in ONE_POINT_TERMS)
        return 0.0 if off else DEFAULT_WEIGHTS[name]
    weight = check_hyper(weight, name, positive=False)
    if weight and not target_is_maps:
        raise ValueError(f"{name}={weight} needs the target's maps, but target is statistics; give the target "
                         f"maps, or {name}=0")
    return weight


def check_fit_arguments(n_iter, batch_size, lr, match, diversity, weight_decay, seed, norm):
    if norm not in ("self", None):
        raise ValueError(f"norm must be 'self' or None, got {norm!r}")
    n_iter = check_positive_int(n_iter, "n_iter")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_hyper(lr, "lr", positive=True)
    diversity = check_hyper(diversity, "diversity", positive=False)
    weight_decay = check_hyper(weight_decay, "weight_decay", positive=False)
    if match not in MATCHES:
        raise ValueError(f"match must be one of {MATCHES}, got {match!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return n_iter, batch_size, lr, diversity, weight_decay


def evaluate(gen, parts, seeds, when):
    """``{when_distance, when_decorrelation, when_one_point}`` floats of a batch drawn from
    ``seeds``, in evaluation mode (NaN for a term that does not apply)."""
    from foscat_core.nn.training import eval_mode

    with eval_mode(gen), gen.fw.no_grad():
        x = gen([gen.backend.asarray(a, dtype=gen.dtype) for a in gen._noise(seeds)])
        terms = parts(x)
    to = gen.backend.to_numpy
    return {f"{when}_{k}": (float(to(v)) if v is not None else float("nan"))
            for k, v in terms.items() if k != "total"}


def fit(gen, target, scat_op, *, n_iter, batch_size, lr, verbose, seed, match, diversity, mask, lr_schedule,
        weight_decay, one_point, norm, spectrum=None, moments=None):
    n_iter, batch_size, lr, diversity, weight_decay = check_fit_arguments(
        n_iter, batch_size, lr, match, diversity, weight_decay, seed, norm)
    schedule = resolve_schedule(lr_schedule, n_iter)
    check_operator(gen, scat_op)
    ref, norm, maps = reference(gen, target, scat_op, mask, norm)
    quantile = gen.config["output"] == "quantile"
    one_point, spectrum, moments = (check_map_term(w, name, maps is not None, quantile) for w, name in
                                    ((one_point, "one_point"), (spectrum, "spectrum"), (moments, "moments")))
    s0 = np.asarray(ref.backend.to_numpy(ref["S0"]), dtype=np.float64)  # (1, M, 2)
    gen.fw.assign(gen.out_mean, np.asarray([s0[..., 0].mean()]))
    gen.fw.assign(gen.out_std, np.asarray([np.sqrt(max(s0[..., 1].mean(), 0.0))]))
    if quantile:
        if maps is None:
            raise ValueError("output='quantile' takes the target's values, but target is statistics; give the "
                             "target maps, or build the Generator with another output")
        gen.fw.assign(gen.out_quantiles, target_quantiles(maps, gen.n_cells)[0])
    parts = make_objective(gen, scat_op, ref, norm, match, diversity, mask, one_point, maps, spectrum, moments)
    opt = persistent_optimizer(gen, "adam", lr, weight_decay, 0.0, fresh=False)
    step = gen.fw.trainer(gen, lambda x, y, w: parts(x)["total"], opt)
    rng = np.random.default_rng(seed)
    probe = [int(s) for s in rng.integers(0, 2**63 - 1, size=max(batch_size, 2))]
    history = {"loss": [], "lr": []}
    history.update(evaluate(gen, parts, probe, "initial"))
    t0 = time.perf_counter()
    gen.train()
    bar = tqdm(range(n_iter), desc=f"fit Generator ({gen.backend.name})", disable=not verbose)
    for it in bar:
        step_lr = scheduled_lr(lr, schedule, it)
        opt.set_hyper(step_lr, weight_decay)
        seeds = [int(s) for s in rng.integers(0, 2**63 - 1, size=batch_size)]
        noise = [gen.backend.asarray(a, dtype=gen.dtype) for a in gen._noise(seeds)]
        loss = step(noise, None, None)
        if not np.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at step {it}; lower lr (got {lr})")
        history["loss"].append(loss)
        history["lr"].append(step_lr)
        bar.set_postfix(loss=f"{loss:.4g}")
    history["seconds"] = time.perf_counter() - t0
    history.update(evaluate(gen, parts, probe, "final"))
    return history
