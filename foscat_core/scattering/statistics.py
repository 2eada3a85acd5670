"""The statistics object returned by the scattering operator: arithmetic, reductions, save/load.

Complex coefficients are stored as real backend arrays with a trailing axis of size 2
(``[..., 0]`` real part, ``[..., 1]`` imaginary part), identically on every backend.
"""

import numbers

import numpy as np

from foscat_core.backends import resolve_backend

from .compat import BackendCompat, power, raw_backend, safe_sqrt
from .pair_arithmetic import apply_op
from .settings import OperatorSettings, differences
from .statistics_file import ORDER, read_statistics, write_statistics


class ScatteringStatistics:
    """Scattering-covariance coefficients of a batch of maps.

    Shapes (``B`` maps, ``M`` mask rows (1 without mask), ``J`` scales, ``K`` = NORIENT; a
    trailing ``2`` marks a complex coefficient stored as (real, imaginary)):

    - ``S0`` : (B, M, 2) real — ``[..., 0]`` the mean ``<x>``, ``[..., 1]`` the variance
      ``<(x - <x>)**2>``; cross statistics: ``<x>`` and the covariance ``<(x - <x>)(y - <y>)>``.
    - ``S1`` : (B, M, J, K) real — ``<|x * W_jk|>``; cross: ``<sqrt(|x * W_jk| |y * W_jk|)>``.
    - ``S2`` : (B, M, J, K) real — ``<|x * W_jk|**2>``; cross: (B, M, J, K, 2) complex
      ``<(x * W_jk) conj(y * W_jk)>``.
    - ``S3`` : (B, M, n_s3, K, K, 2) complex — entry ``[b, m, s, k2, k3]`` with
      ``(j2, j3) = j2_j3[s]``: ``<(x * W_j3,k3) conj(|y * W_j2,k2| * W_j3,k3)>`` (y = x for auto).
    - ``S3P`` : like S3 with x and y swapped; cross statistics only.
    - ``S4`` : (B, M, n_s4, K, K, K, 2) complex — ``[b, m, s, k1, k2, k3]`` with
      ``(j1, j2, j3) = j1_j2_j3[s]``: ``<(|x * W_j1,k1| * W_j3,k3) conj(|y * W_j2,k2| * W_j3,k3)>``.

    ``n_s3 = J (J + 1) / 2`` and ``n_s4 = J (J + 1) (J + 2) / 6``.

    Arithmetic (``+ - * /`` with another statistics object of the same layout or with a scalar)
    follows complex arithmetic (a scalar added to a complex coefficient goes to its real part).
    Two statistics objects combine only when they come from the same operator settings (nside,
    KERNELSZ, NORIENT, LAMBDA, gauge, Jmax, norm, auto/cross; see
    :mod:`foscat_core.scattering.settings`) and have the same shapes, except that a batch of one
    (a reference such as ``mean_batch()``) meets a batch of any size; otherwise a ``ValueError``
    names what differs. Domain, ordering and mask may differ: comparing the statistics of one
    region or weighting with another's is what they are for. NumPy statistics join a framework's
    (taking its dtype).
    ``stat ** p`` is ``|z| ** p`` for a complex coefficient (so ``(s - ref) ** 2`` is the real
    ``|s - ref|**2`` a loss needs) and ``x ** p`` for a real one.

    Parameters
    ----------
    coeffs : dict of str to backend array
        Coefficients by name (``"S0"``, ``"S1"``, ``"S2"``, ``"S3"``, ``"S3P"``, ``"S4"``) with the
        shapes above; names absent from the dict are absent from the object. Usually made by
        :meth:`ScatteringCovariance.eval <foscat_core.scattering.ScatteringCovariance.eval>`
        rather than by hand.
    complex_names : iterable of str
        The names stored as complex (trailing axis of size 2).
    backend : BackendCompat, Backend or str
        Backend of the arrays (wrapped in a :class:`BackendCompat` when needed).
    j2_j3 : array_like of int, shape (n_s3, 2)
        Scale pair of each S3 (and S3P) entry.
    j1_j2_j3 : array_like of int, shape (n_s4, 3)
        Scale triple of each S4 entry.
    cross : bool
        True for cross statistics of two maps.
    norm : {None, "self", "auto"}
        The normalisation the coefficients were computed with (recorded, not applied).
    settings : OperatorSettings or dict, optional
        The operator settings of the call that made them (``eval`` fills it in). ``None``:
        unknown (statistics built by hand, or read from a file written before settings were
        saved); such statistics combine with each other but not with ones of known settings.

    Attributes
    ----------
    backend : BackendCompat
    j2_j3 : ndarray of int64, shape (n_s3, 2)
    j1_j2_j3 : ndarray of int64, shape (n_s4, 3)
    cross : bool
    norm : {None, "self", "auto"}
    settings : dict or None
        The operator settings (see :class:`~foscat_core.scattering.settings.OperatorSettings`)
        plus the current ``backend`` name and ``dtype``; ``None`` when unknown.

    Examples
    --------
    >>> import numpy as np
    >>> from foscat_core.scattering import ScatteringStatistics, funct
    >>> op = funct(KERNELSZ=3, NORIENT=2, backend="numpy")
    >>> stat = op.eval(np.random.default_rng(0).normal(size=(2, 48)))  # (B, N) at nside 2
    >>> isinstance(stat, ScatteringStatistics), stat.names
    (True, ('S0', 'S1', 'S2', 'S3', 'S4'))
    >>> stat.S1.shape, stat.S3.shape  # (B, M, J, K) and (B, M, n_s3, K, K, 2)
    ((2, 1, 2, 2), (2, 1, 3, 2, 2, 2))
    >>> stat.j2_j3.tolist()
    [[0, 0], [0, 1], [1, 1]]
    >>> float((stat - stat).reduce_sum())
    0.0
    >>> float(((stat - stat.mean_batch()) ** 2).reduce_mean()) >= 0
    True
    >>> stat.settings["Jmax"], stat.settings["NORIENT"], stat.settings["backend"]
    (2, 2, 'numpy')
    >>> stat - op.eval(np.zeros(48), Jmax=1)
    Traceback (most recent call last):
    ...
    ValueError: statistics of different operator settings cannot be combined: Jmax: 2 vs 1

    Built by hand from some coefficients:

    >>> part = ScatteringStatistics({"S0": stat.S0, "S1": stat.S1}, (), "numpy", np.zeros((0, 2)), np.zeros((0, 3)))
    >>> part.names, (2 * part).S1.shape
    (('S0', 'S1'), (2, 1, 2, 2))
    """

    def __init__(self, coeffs, complex_names, backend, j2_j3, j1_j2_j3, cross=False, norm=None, settings=None):
        self._c = {name: coeffs[name] for name in ORDER if name in coeffs}
        self._complex = frozenset(n for n in complex_names if n in self._c)
        self.backend = backend if isinstance(backend, BackendCompat) else BackendCompat(resolve_backend(backend))
        self.j2_j3 = np.asarray(j2_j3, dtype=np.int64)
        self.j1_j2_j3 = np.asarray(j1_j2_j3, dtype=np.int64)
        self.cross = bool(cross)
        self.norm = norm
        if isinstance(settings, dict):
            settings = OperatorSettings.from_dict({k: v for k, v in settings.items() if k not in ("backend", "dtype")})
        if settings is not None and not isinstance(settings, OperatorSettings):
            raise TypeError(f"settings must be an OperatorSettings, a dict or None, got {type(settings).__name__}")
        self._settings = settings

    @property
    def settings(self):
        if self._settings is None:
            return None
        return dict(self._settings.as_dict(), backend=self.backend.name, dtype=self.dtype)

    # --- access ---------------------------------------------------------------------------
    @property
    def names(self):
        """Coefficient names present, in flattening order."""
        return tuple(self._c)

    def is_complex(self, name):
        return name in self._complex

    def __getattr__(self, name):
        if name in ORDER:
            coeffs = self.__dict__.get("_c", {})
            if name in coeffs:
                return coeffs[name]
            if name == "S3P":
                return None
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __getitem__(self, name):
        return self._c[name]

    def __repr__(self):
        shapes = ", ".join(f"{n}={tuple(a.shape)}{'c' if n in self._complex else ''}" for n, a in self._c.items())
        kind = "cross" if self.cross else "auto"
        return f"ScatteringStatistics({self.backend.name}, {kind}, norm={self.norm!r}, {shapes})"

    def _new(self, coeffs, complex_names):
        return ScatteringStatistics(coeffs, complex_names, self.backend, self.j2_j3, self.j1_j2_j3, self.cross,
                                    self.norm, self._settings)

    def to_backend(self, backend, dtype=None):
        """A copy on ``backend`` (through host memory: any autograd graph is cut), in ``dtype``
        (``"float32"``/``"float64"``; default: the dtype it has)."""
        bk = backend if isinstance(backend, BackendCompat) else BackendCompat(resolve_backend(backend))
        dtype = self.dtype if dtype is None else dtype  # by name: never silently narrowed (JAX without x64)
        coeffs = {n: bk.raw.asarray(self.backend.to_numpy(a), dtype=dtype) for n, a in self._c.items()}
        return ScatteringStatistics(coeffs, self._complex, bk, self.j2_j3, self.j1_j2_j3, self.cross, self.norm,
                                    self._settings)

    @property
    def dtype(self):
        """``"float32"`` or ``"float64"``: the dtype the coefficients are stored in."""
        return self.backend.raw.dtype_name(next(iter(self._c.values())))

    def map(self, fn):
        """A new object with ``fn(array)`` applied to every stored array (complex ones include their pair axis)."""
        return self._new({n: fn(a) for n, a in self._c.items()}, self._complex)

    # --- arithmetic -----------------------------------------------------------------------
    def _binary(self, other, op, reflected=False):
        xp = self.backend.xp
        if isinstance(other, ScatteringStatistics):
            if other.names != self.names:
                raise ValueError(f"statistics hold different coefficients: {self.names} vs {other.names}")
            self._check_compatible(other)
            if other.backend.name != self.backend.name:
                # Host (NumPy) statistics join a framework's: they carry no graph to lose.
                # They take the framework side's dtype (a float64 host reference meets a float32
                # operator's statistics on every backend alike).
                if other.backend.host:
                    other = other.to_backend(self.backend, dtype=self.dtype)
                elif self.backend.host:
                    return self.to_backend(other.backend, dtype=other.dtype)._binary(other, op, reflected)
                else:
                    raise TypeError(f"cannot combine {self.backend.name} and {other.backend.name} statistics; "
                                    "convert one with to_backend()")
            out, cplx = {}, set()
            for n in self.names:
                a, ac, b, bc = self._c[n], n in self._complex, other._c[n], n in other._complex
                if reflected:
                    a, ac, b, bc = b, bc, a, ac
                out[n], is_c = apply_op(xp, op, a, ac, b, bc)
                if is_c:
                    cplx.add(n)
            return self._new(out, cplx)
        if not _is_scalar(other):
            raise TypeError(f"statistics combine with statistics or scalars, got {type(other).__name__}")
        out = {}
        for n in self.names:
            a, ac = self._c[n], n in self._complex
            out[n] = apply_op(xp, op, other, False, a, ac)[0] if reflected else apply_op(xp, op, a, ac, other, False)[0]
        return self._new(out, self._complex)

    def _check_compatible(self, other):
        """ValueError naming what differs: checked settings, then shapes (a batch of 1 broadcasts)."""
        a, b = self._settings, other._settings
        if a is not b:
            if (a is None) != (b is None):
                raise ValueError("statistics of unknown operator settings (built by hand or read from an old file) "
                                 "cannot be combined with statistics of known settings; recompute them with eval(), "
                                 "or pass settings= when building them")
            diff = differences(a, b)
            if diff:
                raise ValueError(f"statistics of different operator settings cannot be combined: {'; '.join(diff)}")
        for n, u in self._c.items():
            v = other._c[n]
            su = tuple(u.shape)[:-1] if n in self._complex else tuple(u.shape)
            sv = tuple(v.shape)[:-1] if n in other._complex else tuple(v.shape)
            if len(su) != len(sv) or not all(_dims_match(p, q, i == 0) for i, (p, q) in enumerate(zip(su, sv))):
                raise ValueError(f"statistics of different shapes cannot be combined: {n} {su} vs {sv} "
                                 "(only a batch of 1 meets a batch of another size)")

    def __add__(self, other):
        return self._binary(other, "add")

    def __radd__(self, other):
        return self._binary(other, "add", reflected=True)

    def __sub__(self, other):
        return self._binary(other, "sub")

    def __rsub__(self, other):
        return self._binary(other, "sub", reflected=True)

    def __mul__(self, other):
        return self._binary(other, "mul")

    def __rmul__(self, other):
        return self._binary(other, "mul", reflected=True)

    def __truediv__(self, other):
        return self._binary(other, "div")

    def __rtruediv__(self, other):
        return self._binary(other, "div", reflected=True)

    def __neg__(self):
        return self.map(lambda a: -a)

    def __pow__(self, p):
        """``|z| ** p`` for complex coefficients (the result is real), ``x ** p`` for real ones."""
        if not isinstance(p, numbers.Real) or isinstance(p, bool):
            raise TypeError(f"the exponent must be a real number, got {type(p).__name__}")
        bk = raw_backend(self.backend)
        out = {}
        for n, a in self._c.items():
            if n in self._complex:
                sq = a[..., 0] * a[..., 0] + a[..., 1] * a[..., 1]
                out[n] = sq if p == 2 else power(bk, sq, p / 2)
            else:
                out[n] = power(bk, a, p)
        return self._new(out, ())

    def abs(self):
        """``|z|`` of complex coefficients, ``|x|`` of real ones (a real object)."""
        xp = self.backend.xp
        out = {n: (xp.sqrt(a[..., 0] ** 2 + a[..., 1] ** 2) if n in self._complex else xp.abs(a))
               for n, a in self._c.items()}
        return self._new(out, ())

    # --- reductions -----------------------------------------------------------------------
    def flatten(self):
        """One real 1-D backend array: every coefficient in the order S0, S1, S2, S3, S3P, S4, each
        raveled in C order (complex ones with real and imaginary parts interleaved)."""
        xp = self.backend.xp
        return xp.concat([xp.reshape(a, (-1,)) for a in self._c.values()], axis=0)

    def reduce_sum(self):
        """Sum of :meth:`flatten` (a backend scalar)."""
        return self.backend.xp.sum(self.flatten())

    def reduce_mean(self):
        """Mean of :meth:`flatten` (a backend scalar)."""
        return self.backend.xp.mean(self.flatten())

    def reduce_mean_batch(self, stats=None):
        """Mean over the batch, summed over all coefficients: ``sum(flatten()) / B``.

        ``stat.reduce_mean_batch((stat - ref) ** 2)`` (reduces its argument when one is given) is a
        differentiable backend scalar ready to return from a loss.
        """
        s = self if stats is None else stats
        b = int(next(iter(s._c.values())).shape[0])
        return s.reduce_sum() / b

    def mean_batch(self):
        """Per-coefficient mean over the batch of maps (complex coefficients: of real and imaginary parts).

        Returns
        -------
        ScatteringStatistics
            Same coefficients and settings, batch axis of size 1 (``S1`` (1, M, J, K), ...); a
            reference that meets statistics of any batch size. Differentiable on every backend.

        Examples
        --------
        >>> import numpy as np
        >>> from foscat_core.scattering import funct
        >>> st = funct(KERNELSZ=3, NORIENT=2, backend="numpy").eval(np.random.default_rng(0).normal(size=(3, 48)))
        >>> m = st.mean_batch()
        >>> m.S1.shape, bool(np.allclose(m.S1[0], st.S1.mean(axis=0)))
        ((1, 1, 2, 2), True)
        """
        xp = self.backend.xp
        return self.map(lambda a: xp.mean(a, axis=0, keepdims=True))

    def std_batch(self):
        """Per-coefficient standard deviation over the batch of maps (population, ``ddof=0``).

        A real coefficient gets ``sqrt(mean_b (x_b - <x>)**2)``; a complex one the root mean square
        modulus of its deviation, ``sqrt(mean_b |z_b - <z>|**2)`` (= the quadratic sum of the
        standard deviations of its real and imaginary parts), which is the scale of the
        ``|stat - ref|**2`` terms of :func:`~foscat_core.scattering.reduce_distance`. The result
        is a real object (every coefficient real), batch axis of size 1: ``sigma=`` for
        ``reduce_distance``. Differentiable on every backend (the gradient of a zero standard
        deviation is 0, not NaN).

        Returns
        -------
        ScatteringStatistics
            Real, ``S1`` (1, M, J, K), ``S3`` (1, M, n_s3, K, K), ``S4`` (1, M, n_s4, K, K, K), ...

        Examples
        --------
        >>> import numpy as np
        >>> from foscat_core.scattering import funct
        >>> st = funct(KERNELSZ=3, NORIENT=2, backend="numpy").eval(np.random.default_rng(0).normal(size=(3, 48)))
        >>> sd = st.std_batch()
        >>> sd.S3.shape, sd.is_complex("S3"), bool(np.allclose(sd.S1[0], st.S1.std(axis=0)))
        ((1, 1, 3, 2, 2), False, True)
        >>> z = st.numpy()["S3"]
        >>> bool(np.allclose(sd.S3[0], np.sqrt(z.real.std(0) ** 2 + z.imag.std(0) ** 2)))
        True
        """
        xp = self.backend.xp
        return ((self - self.mean_batch()) ** 2).mean_batch().map(lambda a: safe_sqrt(xp, a))

    # --- host copies and files --------------------------------------------------------------
    def numpy(self):
        """Dict name -> NumPy array (complex128 for complex coefficients, pair axis folded in)."""
        bk = self.backend
        out = {}
        for n, a in self._c.items():
            a = bk.to_numpy(a)
            out[n] = a[..., 0] + 1j * a[..., 1] if n in self._complex else a
        return out

    def save(self, path):
        """Write an ``.npz`` file atomically (temporary file in the same folder, then ``os.replace``),
        with the operator settings, the backend name and the dtype (see :meth:`load`)."""
        write_statistics(self, path)

    @classmethod
    def load(cls, path, backend=None):
        """Read a file written by :meth:`save`.

        Parameters
        ----------
        path : str or path-like
        backend : str or Backend, optional
            Where the coefficients go; default: the backend they were saved from (the default
            backend for files of the first format, which did not record it). They keep their dtype.

        Returns
        -------
        ScatteringStatistics
            With the saved operator settings; a file of the first format (no settings) gives
            statistics of unknown settings, which combine only with statistics of unknown settings.

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        ValueError
            A file that is not one written by :meth:`save` (truncated, corrupt, another format).
        """
        return read_statistics(cls, path, backend)


def _dims_match(p, q, batch):
    """Equal sizes, or a batch axis of 1 against any; ``None`` (unknown inside a traced graph) matches."""
    return p == q or p is None or q is None or (batch and 1 in (p, q))


def _is_scalar(v):
    if isinstance(v, numbers.Number) and not isinstance(v, bool):
        return True
    shape = getattr(v, "shape", None)
    return shape is not None and len(shape) == 0


scat_cov = ScatteringStatistics
