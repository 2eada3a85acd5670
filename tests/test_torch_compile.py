"""torch.compile and torch.export of the networks: no graph breaks, the eager numbers, eager
calls undisturbed by an export, a differentiable exported program, the NaN check in a graph.

Graphs are compiled with ``backend="aot_eager"`` (Dynamo + AOT autograd, forward and backward
graphs, no code generation: seconds, not minutes); one small network goes through Inductor.
Speed is measured in ``benchmarks/bench_compile.py``.
"""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch._dynamo")

from foscat_core.nn import CNN, GCNN, HealpixUNet, HealpixViT  # noqa: E402

NSIDE = 4
N_CELLS = 12 * NSIDE**2
REGION = np.arange(40, 104)  # a regional domain at NSIDE (cells of two base pixels, in part)


def make(name, **kw):
    if name == "unet":
        return HealpixUNet(NSIDE, 2, [4, 8], backend="torch", seed=0, **kw)
    if name == "cnn":
        return CNN(NSIDE, 2, [4, 8], backend="torch", seed=0, **kw)
    if name == "gcnn":
        return GCNN(nparam=1, chanlist=(2, 4, 4, 1), in_nside=NSIDE, backend="torch", seed=0, **kw)
    return HealpixViT(NSIDE, 2, embed_dim=8, depth=1, num_heads=2, backend="torch", seed=0, **kw)


def inputs(batch, n_cells=N_CELLS, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).normal(size=(batch, 2, n_cells)).astype("float32"))


def grads(net, model, x):
    net.zero_grad(set_to_none=True)
    model(x).square().mean().backward()
    return [p.grad.detach().clone() for p in net.parameters()]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ["unet", "cnn", "gcnn", "vit"])
def test_no_graph_break_in_the_forward_of_any_network(name):
    net = make(name)
    explained = torch._dynamo.explain(net)(inputs(2))
    assert [str(b.reason)[:200] for b in explained.break_reasons] == []
    assert explained.graph_count == 1


def test_no_graph_break_on_a_regional_domain_after_a_copy():
    # deepcopy drops a stencil's operators (as pickling does): the copy builds them again
    net = copy.deepcopy(make("unet", cell_ids=REGION))
    assert torch._dynamo.explain(net)(inputs(2, REGION.size)).graph_break_count == 0


@pytest.mark.parametrize("name", ["unet", "cnn"])
def test_fullgraph_forward_and_training_step_give_the_eager_numbers(name):
    net = make(name)
    x = inputs(3)
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    net.eval()
    with torch.no_grad():
        np.testing.assert_allclose(compiled(x).numpy(), net(x).numpy(), rtol=1e-5, atol=1e-6)
    net.train()
    state = copy.deepcopy(net.state_dict())
    eager = grads(net, net, x)
    eager_stats = net.enc[0].norm1.running_mean.clone() if name == "unet" else net.norms[0].running_mean.clone()
    net.load_state_dict(state)
    traced = grads(net, compiled, x)
    stats = net.enc[0].norm1.running_mean if name == "unet" else net.norms[0].running_mean
    assert len(traced) == len(eager) and any(float(g.abs().max()) > 1e-4 for g in eager)
    for a, b in zip(traced, eager):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats.numpy(), eager_stats.numpy(), rtol=1e-5, atol=1e-7)  # batch norm ran in the graph


def test_inductor_compiled_network_matches_eager_for_another_batch_size():
    net = make("cnn", cell_ids=REGION).eval()
    compiled = torch.compile(net, fullgraph=True)
    with torch.no_grad():
        for batch in (2, 5):  # a new batch size retraces; the contraction has no per-sample loop
            x = inputs(batch, REGION.size, seed=batch)
            np.testing.assert_allclose(compiled(x).numpy(), net(x).numpy(), rtol=1e-5, atol=1e-6)


def test_the_nan_check_is_in_the_graph_and_stays_a_valueerror_eagerly():
    net = make("cnn").eval()
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    x = inputs(2)
    with torch.no_grad():
        compiled(x)  # finite: passes
        x[0, 1, 5] = float("nan")
        with pytest.raises(RuntimeError, match="mask_missing=True"):
            compiled(x)
        with pytest.raises(ValueError, match="x contains NaN or infinite values.*mask_missing=True"):
            net(x)


def test_export_leaves_eager_calls_alone_and_the_exported_program_is_differentiable():
    net = make("unet").eval()
    x = inputs(2)
    with torch.no_grad():
        before = net(x)
    exported = torch.export.export(net, (x,))  # a fresh network: nothing run through it yet
    after = net(x)
    assert type(after) is torch.Tensor  # not a fake tensor left in a cache by the export
    np.testing.assert_array_equal(after.detach().numpy(), before.numpy())
    module = exported.module()
    y = module(inputs(2, seed=1))  # another input, gradients enabled
    assert y.requires_grad
    np.testing.assert_allclose(y.detach().numpy(), net(inputs(2, seed=1)).detach().numpy(), rtol=1e-5, atol=1e-6)
    want = grads(net, net, x)
    module.zero_grad(set_to_none=True)
    module(x).square().mean().backward()
    got = [p.grad for p in module.parameters()]
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
