"""``keep_freed_memory``: a freed large block is reused instead of page-faulted in again.

The call changes the whole process, so it runs in a child process here."""

import subprocess
import sys

import pytest

import foscat_core as fc

_CHILD = """
import resource, sys
import foscat_core as fc
if sys.argv[1] == "keep":
    fc.keep_freed_memory()
def faults_of_a_fresh_200_mb_array():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = bytearray(200 * 2**20)  # zero-filled by malloc's pages: over glibc's 32 MiB mmap ceiling
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    del a
    return after - before
faults_of_a_fresh_200_mb_array()
print(faults_of_a_fresh_200_mb_array())
"""


def _second_allocation_faults(mode):
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is Linux's")
def test_a_freed_large_block_is_reused_instead_of_faulted_in_again():
    default, kept = _second_allocation_faults("default"), _second_allocation_faults("keep")
    assert default >= 90  # 200 MB of fresh pages: 51 200 of 4 KiB, or 100 huge pages of 2 MiB
    assert kept <= 10, (default, kept)


@pytest.mark.parametrize("bad, error", [(1.5, TypeError), (True, TypeError), ("1", TypeError), (0, ValueError),
                                        (2**31, ValueError)])
def test_bad_sizes_are_refused(bad, error):
    with pytest.raises(error, match="max_block_bytes"):
        fc.keep_freed_memory(bad)
