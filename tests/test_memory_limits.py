"""Issue 11 item 5: objects that cannot fit in memory are refused at once, with the sizes named.

Before the fix ``Domain(2**29)``, ``SphericalStencil(2**29, 3)`` and ``down(x, 2**29)`` reached
numpy's "array is too big" (or the OOM killer for sizes just past the machine's memory).
"""

import os

import numpy as np
import pytest

import foscat_core as fc
from conftest import to_numpy
from foscat_core import memory_budget
from foscat_core.domain import Domain
from foscat_core.nn import HealpixUNet

TOP = 2**29
TOP_CELLS = 12 * TOP**2
# The sizes and both numbers of bytes are named: "... would take about 27.7 EB (...), more than ..."
REFUSAL = (rf"nside={TOP} with {TOP_CELLS} cells: .* would take about [\d.]+ [KMGTPEZY]?B \(\d+ bytes\), "
           r"more than the .* \(\d+ bytes\) of memory available")


def test_full_sky_domain_at_the_top_nside_is_refused_at_once():
    with pytest.raises(ValueError, match=REFUSAL + r"; give the cells of a region with cell_ids"):
        Domain(TOP)


@pytest.mark.parametrize("nest", [True, False])
def test_full_sky_stencil_at_the_top_nside_is_refused(backend_name, nest):
    with pytest.raises(ValueError, match=REFUSAL.replace(".* would", "the stencil tables .* would")):
        fc.SphericalStencil(TOP, 3, nest=nest, backend=backend_name)


def test_down_and_up_of_a_full_sky_at_the_top_nside_are_refused(backend_name):
    with pytest.raises(ValueError, match=REFUSAL):
        fc.down(np.ones((1, 12), "float32"), TOP, backend=backend_name)
    with pytest.raises(ValueError, match=REFUSAL):
        fc.down(np.ones((1, 12), "float32"), TOP, nest=False, backend=backend_name)
    with pytest.raises(ValueError, match=r"nside=268435456 with 864691128455135232 cells"):
        fc.up(np.ones((1, 12), "float32"), TOP // 2, backend=backend_name)


def test_full_sky_network_at_the_top_nside_is_refused():
    with pytest.raises(ValueError, match=REFUSAL):
        HealpixUNet(in_nside=TOP, n_chan_in=1, chanlist=[4], KERNELSZ=3, backend="numpy")


def test_regional_domains_at_the_top_nside_still_work(backend_name):
    ids = np.arange(TOP_CELLS - 16, TOP_CELLS, dtype=np.int64)  # the last 4 parents' children
    st = fc.SphericalStencil(TOP, 3, cell_ids=ids, backend=backend_name, dtype="float64")
    x = np.random.default_rng(0).normal(size=(2, 1, ids.size))
    w = np.zeros((1, 1, 9))
    w[0, 0, 4] = 1.0
    np.testing.assert_allclose(to_numpy(st.conv(x, w)), x)
    y, parents = fc.down(x, TOP, ids, backend=backend_name)
    np.testing.assert_array_equal(parents, np.unique(ids // 4))
    np.testing.assert_allclose(to_numpy(y), x.reshape(2, 1, 4, 4).max(axis=-1))
    back = fc.up(y, TOP // 2, parents, backend=backend_name)
    assert tuple(back.shape) == (2, 1, ids.size)


def test_budget_is_the_memory_available(monkeypatch):
    avail = memory_budget.available_memory()
    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < avail <= physical
    # A stencil that fits on any machine is refused once the budget is below its 64*G*N*P bytes.
    need = 64 * 2 * 768 * 25
    monkeypatch.setattr(memory_budget, "available_memory", lambda: need - 1)
    with pytest.raises(ValueError, match=rf"nside=8 with 768 cells: the stencil tables .*G=2, K=5.* \({need} bytes\), "
                                         rf"more than the 2.5 MB \({need - 1} bytes\) of memory available"):
        fc.SphericalStencil(8, 5, n_gauges=2, backend="numpy")
    monkeypatch.setattr(memory_budget, "available_memory", lambda: need)
    fc.SphericalStencil(8, 5, n_gauges=2, backend="numpy")  # exactly fits
