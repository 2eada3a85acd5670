"""torch.compile of the scattering statistics: no graph break, the eager numbers, the same gradient.

The per-scale data of a domain (stencils, down plans and the gather tables of their products,
forward and backward) is built by the first eager call (or when the operator is made with its
domain), so a traced call only reads it. Graphs are compiled with ``backend="aot_eager"`` (Dynamo
+ AOT autograd, forward and backward graphs, no code generation); one forward goes through
Inductor. Tolerance: 1e-5 (float32) relative to the largest reference value.
"""

import healpy as hp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch._dynamo")

from foscat_core.scattering import funct  # noqa: E402

NSIDE = 4
N_CELLS = 12 * NSIDE**2
TOL = 1e-5
# A regional domain: a disc at nside 8 (its coarser scales are the parents present)
REGION = hp.query_disc(8, hp.ang2vec(1.0, 0.5), np.radians(40.0), nest=True)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def maps(n_cells, seed, batch=2):
    return torch.as_tensor(np.random.default_rng(seed).normal(size=(batch, n_cells)).astype("float32"))


def operator(**kw):
    return funct(KERNELSZ=3, NORIENT=4, backend="torch", all_type="float32", **kw)


def coefficients(op, norm=None):
    def fn(x):
        s = op.eval(x, norm=norm)
        return tuple(s[name] for name in s.names)
    return fn


def loss_of(op, target, norm=None):
    def fn(x):
        s = op.eval(x, norm=norm)
        return s.reduce_mean_batch((s - target) ** 2)
    return fn


def value_and_grad(fn, x):
    x = x.clone().requires_grad_(True)
    value = fn(x)
    value.backward()
    return value.detach(), x.grad


def assert_close(got, ref):
    got, ref = (got,) if torch.is_tensor(got) else got, (ref,) if torch.is_tensor(ref) else ref
    assert len(got) == len(ref)
    scale = max(float(r.abs().max()) for r in ref)
    assert scale > 0
    for g, r in zip(got, ref):
        assert g.shape == r.shape and g.dtype == r.dtype
        err = float((g.detach() - r.detach()).abs().max())
        assert err <= TOL * scale, f"error {err:.3e} > {TOL:.0e} x {scale:.3e}"


def no_break(fn, x):
    explained = torch._dynamo.explain(fn)(x)
    assert [str(b.reason)[:300] for b in explained.break_reasons] == []
    assert explained.graph_count == 1


def test_no_graph_break_in_eval_or_in_the_loss():
    op = operator()
    target = op.eval(maps(N_CELLS, 1))  # the eager call that builds the domain's data
    no_break(coefficients(op), maps(N_CELLS, 0))
    no_break(loss_of(op, target), maps(N_CELLS, 0).requires_grad_(True))


@pytest.mark.parametrize("norm", [None, "self"])  # fullgraph=True: any graph break is an error
def test_fullgraph_eval_loss_and_gradient_give_the_eager_numbers(norm):
    op = operator()
    x = maps(N_CELLS, 0)
    target = op.eval(maps(N_CELLS, 1), norm=norm)
    coeffs = coefficients(op, norm)
    assert_close(torch.compile(coeffs, fullgraph=True, backend="aot_eager")(x), coeffs(x))
    loss = loss_of(op, target, norm)
    ref_value, ref_grad = value_and_grad(loss, x)
    value, grad = value_and_grad(torch.compile(loss, fullgraph=True, backend="aot_eager"), x)
    assert float(ref_value) > 0 and float(ref_grad.abs().max()) > 0
    assert_close(value, ref_value)
    assert_close(grad, ref_grad)


def test_regional_domain_no_graph_break_and_the_eager_gradient():
    op = operator(nside=8, cell_ids=REGION)  # the operator's domain: eval(x) takes no ids
    x = maps(REGION.size, 0)
    target = op.eval(maps(REGION.size, 1))
    loss = loss_of(op, target)
    no_break(loss, x.clone().requires_grad_(True))
    torch._dynamo.reset()
    ref_value, ref_grad = value_and_grad(loss, x)
    value, grad = value_and_grad(torch.compile(loss, fullgraph=True, backend="aot_eager"), x)
    assert_close(value, ref_value)
    assert_close(grad, ref_grad)


def test_a_fresh_operator_compiles_without_fullgraph():
    # No eager call first: Dynamo runs the call that builds the domain's data eagerly
    op = operator()
    x = maps(N_CELLS, 0)
    got = torch.compile(coefficients(op), backend="eager")(x)
    assert_close(got, coefficients(operator())(x))


def test_inductor_compiled_eval_matches_eager():
    op = operator()
    x = maps(12 * 2**2, 0)  # nside 2, two scales: code generation stays within seconds
    ref = coefficients(op)(x)
    assert_close(torch.compile(coefficients(op), fullgraph=True)(x), ref)
