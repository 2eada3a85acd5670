"""One Domain per level, shared: networks, plans and the scattering pyramid get the same Domain
objects, ids are checked once, and the numbers are those of the code before the sharing.

The fingerprints below were computed with the code before this change (each level's ids checked
and re-derived by every consumer): integer tables must match exactly, float outputs to 1e-12
(the same machine gives identical bits; another BLAS may differ in the last place).
``index_full`` was recomputed when the full sky started being built on 3 faces and rotated: a
point's zero-weight slots may name other cells (the operator is checked against healpy in
test_stencil_build_speed.py; the networks' outputs below did not change).
"""

import hashlib

import numpy as np
import pytest

import foscat_core as fc
from foscat_core import domain as domain_module
from foscat_core import ordering
from foscat_core.domain import Domain
from foscat_core.nn import CNN, HealpixUNet, HealpixViT
from foscat_core.nn.gcnn import GCNN
from foscat_core.ordering import as_domain
from foscat_core.pyramid_ops import DownPlan, UpPlan
from foscat_core.scattering.pyramid import build_levels, count_scales, level_stencil, mask_pyramid

REGION = np.random.default_rng(0).permutation(np.arange(100, 500))  # shuffled, nside 8
CASES = {"full": (None, True), "reg": (REGION, True), "ring": (REGION, False)}

INT_FINGERPRINTS = {
    'index_full': '29ca02e87c4556b1',
    'down_full': '5539c662fd151ae3e3b0c44298fc1c14',
    'up_full': '41e8c63907d279d1',
    'index_reg': '4508cad4a7546b14',
    'down_reg': '61d50e07a880c8cce927ad815be0db47',
    'up_reg': 'c0a2ea41dd11a1e5',
    'index_ring': '753f17f66bdc305a',
    'down_ring': 'a855ddb1e17bd1d681ee47ac925b9814',
    'up_ring': 'a555612ff724b671',
}

FLOAT_FINGERPRINTS = {
    'unet_full': (-290.3961670082373, 111.62884839541933),
    'cnn_full': (-187.6335049653656, 175.12849611129022),
    'gcnn_full': (-693.3385502301578, 188.5334947400665),
    'vit_full': (1396.4372007577526, 2427.488730025868),
    'unet_reg': (-147.51778822469788, 52.49485208324402),
    'cnn_reg': (-91.5418794143589, 103.18098935316512),
    'gcnn_reg': (-353.69200647902994, 96.05090970020842),
    'vit_reg': (724.2122147605013, 1269.301458676804),
    'unet_ring': (-142.81170807321183, 53.77955690515321),
    'cnn_ring': (-96.5123493725808, 89.04550902788961),
    'gcnn_ring': (-377.4469919943771, 112.35668443805339),
    'vit_ring': (750.3934033743635, 1216.6637758703428),
}


def _sha(a):
    return hashlib.sha256(np.ascontiguousarray(np.asarray(a, dtype=np.int64)).tobytes()).hexdigest()[:16]


def _networks(ids, nest):
    kw = dict(cell_ids=ids, nest=nest, backend="numpy", dtype="float64")
    return {
        "unet": HealpixUNet(8, 2, [3, 4, 5], G=2, seed=1, **kw),
        "cnn": CNN(8, 2, [3, 4], seed=2, **kw),
        "gcnn": GCNN(nparam=2, chanlist=[2, 4, 3], in_nside=8, n_scales=3, seed=3, **kw),
        "vit": HealpixViT(8, 2, 2, embed_dim=8, num_heads=2, seed=4, **kw),
    }


@pytest.fixture
def checks(monkeypatch):
    """Counts the id checks (every path to ``check_cell_ids``) and the parent levels derived."""
    counts = {"checked": 0, "parents": 0}
    real_check, real_parent = domain_module.check_cell_ids, Domain._make_parent

    def check(*args, **kwargs):
        counts["checked"] += 1
        return real_check(*args, **kwargs)

    def parent(self):
        counts["parents"] += 1
        return real_parent(self)

    monkeypatch.setattr(domain_module, "check_cell_ids", check)
    monkeypatch.setattr(ordering, "check_cell_ids", check)
    monkeypatch.setattr(Domain, "_make_parent", parent)
    return counts


@pytest.mark.parametrize("tag", sorted(CASES))
def test_tables_and_outputs_match_the_code_before_sharing(tag):
    ids, nest = CASES[tag]
    st = fc.SphericalStencil(8, 3, cell_ids=ids, nest=nest, gauge_type="cosmo", n_gauges=2, backend="numpy",
                             dtype="float64")
    assert _sha(st.index) == INT_FINGERPRINTS[f"index_{tag}"]
    plan = DownPlan(8, ids, nest=nest)
    assert _sha(plan.parent_ids) + _sha(getattr(plan, "gather", [])) == INT_FINGERPRINTS[f"down_{tag}"]
    assert _sha(UpPlan(4, plan.parent_ids, ids, nest=nest).positions) == INT_FINGERPRINTS[f"up_{tag}"]
    x = np.random.default_rng(1).normal(size=(2, 2, st.n_cells))
    for name, net in _networks(ids, nest).items():
        y = net(x)
        np.testing.assert_allclose((np.sum(y), np.sum(y * y)), FLOAT_FINGERPRINTS[f"{name}_{tag}"], rtol=1e-12,
                                   err_msg=f"{name} on {tag}")


@pytest.mark.parametrize("nest", [True, False])
def test_unet_levels_share_one_pyramid_checked_once(checks, nest):
    net = HealpixUNet(8, 1, [2, 2, 2, 2], cell_ids=REGION, nest=nest, backend="numpy")
    assert checks == {"checked": 1, "parents": 3}  # the input ids once; each coarser level derived once
    levels = net.domain.pyramid(4)
    assert [enc.conv1.stencil.domain for enc in net.enc] == list(levels)  # equality is identity here
    assert all(enc.conv1.stencil.domain is dom for enc, dom in zip(net.enc, levels))
    assert all(down.plan.domain is levels[j] and down.plan.parent is levels[j + 1] for j, down in enumerate(net.downs))
    # ups[i] goes from level n_down - i to n_down - i - 1: its coarse domain is a level of the pyramid
    assert [up.plan.domain for up in net.ups] == [levels[3], levels[2], levels[1]]
    assert all(dec.conv1.stencil.domain is levels[2 - i] for i, dec in enumerate(net.dec))
    assert checks["parents"] == 3  # asking again derives nothing


def test_gcnn_and_cnn_use_the_network_domain(checks):
    gcnn = GCNN(nparam=1, chanlist=[1, 2], in_nside=8, cell_ids=REGION, n_scales=3, backend="numpy")
    levels = gcnn.domain.pyramid(3)
    assert [st.domain for st in gcnn.transform.stencils] == list(levels)
    assert all(a is b for a, b in zip((st.domain for st in gcnn.transform.stencils), levels))
    assert [p.domain for p in gcnn.transform.downs] == list(levels[:2])
    assert [p.domain for p in gcnn.transform.ups] == list(levels[1:])
    cnn = CNN(8, 1, [2], cell_ids=REGION, backend="numpy")
    assert cnn.convs[0].stencil.domain is cnn.domain
    assert checks == {"checked": 2, "parents": 2}  # one check per network, one derivation per level


def test_vit_checks_its_ids_once(checks):
    net = HealpixViT(8, 1, cell_ids=REGION, embed_dim=4, num_heads=1, backend="numpy")
    assert checks["checked"] == 1
    assert net.token_nside == 2  # default: in_nside // 4, so 16 cells per token
    np.testing.assert_array_equal(net.layout.token_ids, np.unique(REGION // 16))


def test_scattering_levels_share_one_pyramid(checks):
    dom = as_domain(8, REGION)
    n = count_scales(dom)
    levels = build_levels(dom, None, n)
    # Each level derived once for count_scales and build_levels together; the one extra is the
    # level under MIN_CELLS that count_scales looked at before stopping.
    assert checks == {"checked": 1, "parents": n}
    assert all(lv.domain is d for lv, d in zip(levels, dom.pyramid(n)))
    assert levels[0].cell_ids is dom.cell_ids and levels[1].nside == 4
    st = level_stencil(levels[1], 3, "phi", "numpy", "float64")
    assert st.domain is levels[1].domain
    assert levels[0].down_plan is levels[0].down_plan and levels[0].down_plan.parent is levels[1].domain
    mask = np.abs(np.random.default_rng(2).normal(size=(2, dom.n_cells))) + 0.1
    weights = mask_pyramid(mask, levels)
    assert checks["parents"] == n  # the stencil, the down plans and the mask reused the levels
    direct, _ = fc.down(mask, 8, REGION, mode="mean", backend="numpy")  # a fresh domain, the old way
    np.testing.assert_array_equal(weights[1], direct / direct.sum(axis=1, keepdims=True))


def test_scattering_operator_results_match_the_code_before_sharing():
    from foscat_core.scattering import ScatteringCovariance

    from foscat_core.scattering.settings import LEGACY_XI

    # The wavelet carrier of the code the figures below were recorded with.
    op = ScatteringCovariance(KERNELSZ=3, backend="numpy", all_type="float64", XI=LEGACY_XI)
    x = np.random.default_rng(3).normal(size=(1, REGION.size))
    mask = np.abs(np.random.default_rng(4).normal(size=(1, REGION.size))) + 0.1
    stats = op.eval(x, cell_ids=REGION, nside=8, mask=mask).numpy()
    assert [lv.n_cells for lv in build_levels(8, REGION, count_scales(8, REGION))] == [400, 100, 26]
    before = {"S0": 1.1123980617305564, "S1": 4.0088563523510565, "S2": 3.113488602703024, "S3": 0.532513100723494,
              "S4": 7.02500638191926}
    for key, value in before.items():
        np.testing.assert_allclose(np.sum(np.abs(stats[key])), value, rtol=1e-12, err_msg=key)
