"""What a statistics object remembers of the operator and the call that made it.

Arithmetic between two statistics objects is only meaningful when every coefficient means the
same thing on both sides: same wavelets (KERNELSZ, NORIENT, LAMBDA, XI, gauge), same scales (nside,
Jmax), same normalisation, both auto or both cross. Those are :data:`CHECKED`. The domain, the
ordering and the mask are recorded but not checked: statistics are averages over cells, made to
compare one region or weighting with another (an inpainting target is measured on the observed
cells, the loss on the hole); the mask's number of rows is checked with the shapes.
"""

import dataclasses
import hashlib
import math

import numpy as np

CHECKED = ("nside", "KERNELSZ", "NORIENT", "LAMBDA", "XI", "gauge_type", "Jmax", "norm", "cross")

# The wavelet carrier of statistics saved before it was recorded (3 pi / 4 radians per pixel).
LEGACY_XI = 0.75 * math.pi


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    """Settings of one ``eval`` call.

    Attributes
    ----------
    nside : int
    n_cells : int
        Cells of the domain (``12 * nside**2`` for the full sky).
    cells_hash : str
        ``"full"`` for the full sky, else a hash of the sorted NESTED ids (ordering and cell order
        do not change it).
    nest : bool
        The ordering the maps came in (True: NESTED, False: RING).
    KERNELSZ, NORIENT : int
    LAMBDA : float
    gauge_type : str
    Jmax : int
        Number of scales.
    norm : {None, "self", "auto"}
    cross : bool
    mask_rows : int
        0 without mask.
    mask_hash : str or None
        Hash of the mask in NESTED cell order (None without mask).
    XI : float
        Wavelet carrier frequency (radians per pixel); settings saved without it had ``3 pi / 4``.
    """

    nside: int
    n_cells: int
    cells_hash: str
    nest: bool
    KERNELSZ: int
    NORIENT: int
    LAMBDA: float
    gauge_type: str
    Jmax: int
    norm: object
    cross: bool
    mask_rows: int = 0
    mask_hash: object = None
    XI: float = LEGACY_XI

    def as_dict(self):
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d, name="settings"):
        """The inverse of :meth:`as_dict` (unknown or missing keys: ``ValueError`` naming them)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) - fields or {f for f in fields if f not in ("mask_rows", "mask_hash", "XI")} - set(d):
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"{name}: expected the keys {sorted(fields)}, got {got}")
        return cls(**d)


def differences(a, b):
    """The checked settings that differ, as ``["Jmax: 3 vs 4", ...]`` (empty when compatible)."""
    if a is b or a == b:
        return []
    return [f"{k}: {getattr(a, k)!r} vs {getattr(b, k)!r}" for k in CHECKED if getattr(a, k) != getattr(b, k)]


def hash_array(a):
    """A short content hash of a host array (its dtype and shape included).

    >>> hash_array(np.arange(3)) == hash_array(np.arange(3)), hash_array(np.arange(3)) == hash_array(np.arange(4))
    (True, False)
    """
    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.view(np.uint8).reshape(-1))
    return h.hexdigest()
