"""Neighbor lists: a numba cell-list (binning) search and a Verlet-skin cache.

The search is O(N) in the number of atoms. It handles triclinic cells, cutoffs
larger than the cell (many periodic images), mixed periodic boundary conditions
(slabs, wires), non-periodic systems without a cell, a single atom and systems
with no neighbours at all.

Conventions follow :func:`ase.neighborlist.neighbor_list`: a pair ``(i, j, S)``
means atom ``j`` shifted by the integer cell translation ``S`` lies within the
cutoff of atom ``i``; its edge vector is ``D = x_j - x_i + S @ cell`` (Å) and
``d = |D|`` with ``d < cutoff`` (strict). The full list holds both ``(i, j, S)``
and ``(j, i, -S)``; output is sorted by ``i``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from ase.data import atomic_numbers as _atomic_numbers

from .errors import InvalidStructureError

__all__ = [
    "neighbor_list",
    "primitive_neighbor_list",
    "NeighborListCache",
]

# Upper bound on the number of bins relative to the number of atoms: keeps the
# bin arrays small for tiny cutoffs in huge (or vacuum-padded) cells.
_MAX_BINS_PER_ATOM = 4


def _working_cell(pbc, cell, positions, cutoff):
    """Cell used only for binning.

    Periodic directions keep the user's cell vectors. Non-periodic directions
    get vectors perpendicular to the periodic ones, scaled to span the atoms
    (plus a margin), so that every atom has a fractional coordinate in [0, 1)
    there. Returns ``(W, origin)``: fractional coordinates are
    ``(x - origin) @ inv(W)``.
    """
    pbc = np.asarray(pbc, dtype=bool)
    W = np.zeros((3, 3))
    periodic = [c for c in range(3) if pbc[c]]
    for c in periodic:
        W[c] = cell[c]
    # Orthonormal completion of the span of the periodic vectors.
    basis = [W[c] / np.linalg.norm(W[c]) for c in periodic]
    ortho = []
    for v in basis:  # Gram-Schmidt of the periodic vectors
        for u in ortho:
            v = v - np.dot(u, v) * u
        ortho.append(v / np.linalg.norm(v))
    free = []
    for e in np.eye(3):
        if len(ortho) + len(free) == 3:
            break
        v = e.copy()
        for u in ortho + free:
            v = v - np.dot(u, v) * u
        n = np.linalg.norm(v)
        if n > 1e-6:
            free.append(v / n)
    origin = np.zeros(3)
    nonperiodic = [c for c in range(3) if not pbc[c]]
    for c, n in zip(nonperiodic, free):
        proj = positions @ n if len(positions) else np.zeros(1)
        lo, hi = proj.min(), proj.max()
        length = (hi - lo) + cutoff
        W[c] = n * length
        origin += n * (lo - 0.5 * cutoff)
    return W, origin


@numba.njit(cache=True)
def _cumsum_offsets(counts):
    offsets = np.zeros(counts.shape[0] + 1, dtype=np.int64)
    for k in range(counts.shape[0]):
        offsets[k + 1] = offsets[k] + counts[k]
    return offsets


@numba.njit(cache=True)
def _bin_atoms(frac, pbc, nbins):
    """Bin index (3 ints) and periodic wrap shift of every atom."""
    n = frac.shape[0]
    bins = np.empty((n, 3), dtype=np.int64)
    wrap = np.zeros((n, 3), dtype=np.int64)
    for a in range(n):
        for c in range(3):
            f = frac[a, c]
            if pbc[c]:
                w = math.floor(f)
                f = f - w
                wrap[a, c] = np.int64(w)
            b = np.int64(math.floor(f * nbins[c]))
            if b < 0:
                b = 0
            if b >= nbins[c]:
                b = nbins[c] - 1
            bins[a, c] = b
    return bins, wrap


@numba.njit(cache=True)
def _grow(a, size):
    b = np.empty((size,) + a.shape[1:], dtype=a.dtype)
    b[: a.shape[0]] = a
    return b


@numba.njit(cache=True)
def _pair_search(positions, cell, pbc, bins, wrap, nbins, reach, cutoff,
                 self_interaction, bothways, capacity):
    """Single pass over atoms in index order (so the output is sorted by i).

    Works on wrapped positions for binning; distances and shifts refer to the
    original positions: S = image - wrap_j + wrap_i. Output buffers start at
    ``capacity`` pairs and double when full.
    """
    n = positions.shape[0]
    nb0, nb1, nb2 = nbins[0], nbins[1], nbins[2]
    nbin_total = nb0 * nb1 * nb2
    # Counting sort of atoms by linear bin index.
    lin = np.empty(n, dtype=np.int64)
    bin_count = np.zeros(nbin_total, dtype=np.int64)
    for a in range(n):
        lin[a] = (bins[a, 0] * nb1 + bins[a, 1]) * nb2 + bins[a, 2]
        bin_count[lin[a]] += 1
    bin_start = _cumsum_offsets(bin_count)
    fill = bin_start[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for a in range(n):
        order[fill[lin[a]]] = a
        fill[lin[a]] += 1
    # Wrapped positions, in bin order, for cache-friendly inner loops.
    wpos = np.empty((n, 3))
    xw = np.empty((n, 3))
    for a in range(n):
        for c in range(3):
            xw[a, c] = (positions[a, c] - wrap[a, 0] * cell[0, c]
                        - wrap[a, 1] * cell[1, c] - wrap[a, 2] * cell[2, c])
    for k in range(n):
        wpos[k] = xw[order[k]]
    cut2 = cutoff * cutoff
    out_i = np.empty(capacity, dtype=np.int64)
    out_j = np.empty(capacity, dtype=np.int64)
    out_S = np.empty((capacity, 3), dtype=np.int64)
    m = 0
    for i in range(n):
        xi0, xi1, xi2 = xw[i, 0], xw[i, 1], xw[i, 2]
        for d0 in range(-reach[0], reach[0] + 1):
            b0 = bins[i, 0] + d0
            s0 = 0
            if pbc[0]:
                s0 = b0 // nb0
                b0 = b0 - s0 * nb0
            elif b0 < 0 or b0 >= nb0:
                continue
            for d1 in range(-reach[1], reach[1] + 1):
                b1 = bins[i, 1] + d1
                s1 = 0
                if pbc[1]:
                    s1 = b1 // nb1
                    b1 = b1 - s1 * nb1
                elif b1 < 0 or b1 >= nb1:
                    continue
                for d2 in range(-reach[2], reach[2] + 1):
                    b2 = bins[i, 2] + d2
                    s2 = 0
                    if pbc[2]:
                        s2 = b2 // nb2
                        b2 = b2 - s2 * nb2
                    elif b2 < 0 or b2 >= nb2:
                        continue
                    sh0 = s0 * cell[0, 0] + s1 * cell[1, 0] + s2 * cell[2, 0] - xi0
                    sh1 = s0 * cell[0, 1] + s1 * cell[1, 1] + s2 * cell[2, 1] - xi1
                    sh2 = s0 * cell[0, 2] + s1 * cell[1, 2] + s2 * cell[2, 2] - xi2
                    b = (b0 * nb1 + b1) * nb2 + b2
                    for k in range(bin_start[b], bin_start[b + 1]):
                        dx = wpos[k, 0] + sh0
                        dy = wpos[k, 1] + sh1
                        dz = wpos[k, 2] + sh2
                        if dx * dx + dy * dy + dz * dz >= cut2:
                            continue
                        j = order[k]
                        S0 = s0 - wrap[j, 0] + wrap[i, 0]
                        S1 = s1 - wrap[j, 1] + wrap[i, 1]
                        S2 = s2 - wrap[j, 2] + wrap[i, 2]
                        if j == i and S0 == 0 and S1 == 0 and S2 == 0:
                            if not self_interaction:
                                continue
                        elif not bothways:
                            # keep (i, j, S) if i < j, or i == j and S > 0
                            if j < i:
                                continue
                            if j == i:
                                if S0 < 0 or (S0 == 0 and (S1 < 0 or (S1 == 0 and S2 < 0))):
                                    continue
                        if m == out_i.shape[0]:
                            out_i = _grow(out_i, 2 * m + 16)
                            out_j = _grow(out_j, 2 * m + 16)
                            out_S = _grow(out_S, 2 * m + 16)
                        out_i[m] = i
                        out_j[m] = j
                        out_S[m, 0] = S0
                        out_S[m, 1] = S1
                        out_S[m, 2] = S2
                        m += 1
    return out_i[:m], out_j[:m], out_S[:m]


def check_geometry(pbc, cell, positions):
    """Validated ``(pbc (3,) bool, cell (3, 3) float64, positions (N, 3) float64)``.

    Raises
    ------
    InvalidStructureError (a ValueError)
        Positions of wrong shape, NaN or infinite positions or cell, periodic
        cell vectors that are zero or linearly dependent (zero-volume cell).
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise InvalidStructureError(f"positions must have shape (n_atoms, 3), got {positions.shape}")
    if not np.all(np.isfinite(positions)):
        bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
        raise InvalidStructureError(f"positions of atoms {bad[:10].tolist()} are NaN or infinite")
    cell = np.ascontiguousarray(np.asarray(cell, dtype=np.float64).reshape(3, 3))
    if not np.all(np.isfinite(cell)):
        raise InvalidStructureError("the cell contains NaN or infinite entries")
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    if pbc.any():
        P = cell[pbc]
        sv = np.linalg.svd(P, compute_uv=False)
        if sv.min() < 1e-10 * max(1.0, sv.max()) or np.linalg.norm(P, axis=1).min() < 1e-8:
            raise InvalidStructureError(
                f"zero-volume periodic cell: the periodic cell vectors {np.flatnonzero(pbc).tolist()} are zero "
                f"or linearly dependent (cell = {np.round(cell, 6).tolist()}, pbc = {pbc.tolist()})")
    return pbc, cell, positions


def _check_inputs(pbc, cell, positions, cutoff):
    if not (np.isfinite(cutoff) and cutoff > 0):
        raise ValueError(f"cutoff must be a positive finite number of Å, got {cutoff}")
    return check_geometry(pbc, cell, positions)


def pair_list(positions, cell, pbc, cutoff, self_interaction=False, bothways=True):
    """Low-level neighbor search on plain arrays.

    Parameters
    ----------
    positions : (n_atoms, 3) float array, Å
    cell : (3, 3) float array, Å, lattice vectors as rows; rows of
        non-periodic directions are ignored (may be zero).
    pbc : (3,) bool array
    cutoff : float, Å; pairs with ``d < cutoff`` are returned.
    self_interaction : bool
        Include ``(i, i, 0)``.
    bothways : bool
        Full list (both ``(i, j, S)`` and ``(j, i, -S)``) if True, half list if
        False (only ``i < j``, or ``i == j`` with ``S`` lexicographically > 0).

    Returns
    -------
    i, j : (n_pairs,) int64 arrays, sorted by ``i``
    S : (n_pairs, 3) int64 array of cell shifts

    Raises
    ------
    ValueError
        For NaN/infinite positions or cell, a non-positive cutoff, or periodic
        cell vectors that are zero or linearly dependent.
    """
    pbc, cell, positions = _check_inputs(pbc, cell, positions, cutoff)
    n = len(positions)
    if n == 0:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3), np.int64))
    W, origin = _working_cell(pbc, cell, positions, cutoff)
    inv = np.linalg.inv(W)
    frac = (positions - origin) @ inv
    # Distance between lattice planes of the working cell along each direction.
    plane = 1.0 / np.linalg.norm(inv.T, axis=1)
    nbins = np.maximum(1, np.floor(plane / cutoff)).astype(np.int64)
    max_bins = max(1, _MAX_BINS_PER_ATOM * n)
    while np.prod(nbins) > max_bins:
        k = np.argmax(nbins)
        nbins[k] = max(1, nbins[k] // 2)
    reach = np.ceil(cutoff * nbins / plane * (1 + 1e-12)).astype(np.int64)
    # Without periodicity there is nothing beyond the bins we have.
    reach = np.where(pbc, reach, np.minimum(reach, nbins - 1)).astype(np.int64)
    bins, wrap = _bin_atoms(frac, pbc, nbins)
    # The periodic image search may use the user's cell rows; zero out the
    # non-periodic ones so they never contribute.
    pcell = np.where(pbc[:, None], cell, 0.0)
    # Expected pair count from the density, with margin; buffers grow if needed.
    volume = abs(np.linalg.det(W))
    expected = n * (n / volume) * 4.19 * cutoff ** 3 * (1.0 if bothways else 0.5)
    capacity = int(min(1.3 * expected, 5e8)) + 64
    return _pair_search(positions, pcell, pbc, bins, wrap, nbins, reach, cutoff,
                        self_interaction, bothways, capacity)


def _max_cutoff(cutoff):
    if isinstance(cutoff, dict):
        return max(cutoff.values())
    if np.isscalar(cutoff):
        return float(cutoff)
    return 2.0 * float(np.max(cutoff))


def _filter_cutoff(cutoff, numbers, i, j, d):
    """Mask of pairs that pass per-atom-radius or per-element-pair cutoffs."""
    if isinstance(cutoff, dict):
        per_pair = np.zeros(len(d))
        for (a, b), c in cutoff.items():
            za = _atomic_numbers.get(a, a)
            zb = _atomic_numbers.get(b, b)
            m = ((numbers[i] == za) & (numbers[j] == zb)) | ((numbers[i] == zb) & (numbers[j] == za))
            per_pair[m] = c
        return d < per_pair
    radii = np.asarray(cutoff, dtype=np.float64)
    return d < radii[i] + radii[j]


def primitive_neighbor_list(quantities, pbc, cell, positions, cutoff, numbers=None,
                            self_interaction=False, bothways=True):
    """Neighbor list on plain arrays, with :func:`ase.neighborlist.primitive_neighbor_list`'s conventions.

    Parameters
    ----------
    quantities : str
        Letters among ``'i'``, ``'j'``, ``'D'``, ``'d'``, ``'S'``: first atom
        index, second atom index, edge vector (Å), distance (Å), integer cell
        shift.
    pbc : (3,) bool
    cell : (3, 3) float, Å
    positions : (n_atoms, 3) float, Å
    cutoff : float, or (n_atoms,) radii, or dict ``{(Z1, Z2): cutoff}``
        As in ASE: a global cutoff; per-atom radii (pair if ``d < r_i + r_j``);
        or per element-pair cutoffs (element symbols or atomic numbers).
    numbers : (n_atoms,) int, needed for a dict cutoff.
    self_interaction : bool
    bothways : bool
        False returns a half list (see :func:`pair_list`).

    Returns
    -------
    One array per letter of ``quantities`` (a tuple if several), with ASE's
    dtypes: int64 for i, j, S; float64 for D, d.

    Raises
    ------
    ValueError
        Unsupported quantity, invalid positions/cell/cutoff (see
        :func:`pair_list`).
    """
    for q in quantities:
        if q not in "ijDdS":
            raise ValueError(f"unsupported quantity {q!r}; use letters of 'ijDdS'")
    rc = _max_cutoff(cutoff)
    i, j, S = pair_list(positions, cell, pbc, rc, self_interaction, bothways)
    scalar = np.isscalar(cutoff)
    if scalar and not set(quantities) & set("Dd"):
        res = tuple({"i": i, "j": j, "S": S}[q] for q in quantities)
        return res[0] if len(res) == 1 else res
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    D = positions[j] - positions[i] + S @ cell
    d = np.sqrt(np.einsum("ij,ij->i", D, D))
    if not scalar:
        if isinstance(cutoff, dict) and numbers is None:
            raise ValueError("a per element-pair cutoff needs atomic numbers")
        m = _filter_cutoff(cutoff, np.asarray(numbers) if numbers is not None else None, i, j, d)
        i, j, S, D, d = i[m], j[m], S[m], D[m], d[m]
    out = {"i": i, "j": j, "S": S, "D": D, "d": d}
    res = tuple(out[q] for q in quantities)
    return res[0] if len(res) == 1 else res


def neighbor_list(quantities, atoms, cutoff, self_interaction=False):
    """Drop-in replacement for :func:`ase.neighborlist.neighbor_list`.

    Parameters
    ----------
    quantities : str
        Letters among ``'ijDdS'`` (see :func:`primitive_neighbor_list`).
    atoms : ase.Atoms
    cutoff : float (Å), per-atom radii, or per element-pair dict, as in ASE.
    self_interaction : bool

    Returns
    -------
    Arrays as :func:`ase.neighborlist.neighbor_list` returns them (same
    meaning, dtypes; sorted by ``i``).

    Raises
    ------
    ValueError
        NaN/infinite positions, zero or linearly dependent periodic cell
        vectors, non-positive cutoff, unsupported quantity.
    """
    return primitive_neighbor_list(quantities, atoms.pbc, atoms.cell.array, atoms.positions,
                                   cutoff, numbers=atoms.numbers,
                                   self_interaction=self_interaction)


@numba.njit(cache=True)
def _edges_within(positions, i, j, shift_cart, cutoff, oi, oj, D, keep):
    """Candidate pairs whose edge vector x_j - x_i + shift is shorter than ``cutoff``.

    Writes the first M rows of ``oi``, ``oj`` (pair indices), ``D`` (edge
    vectors) and ``keep`` (indices into the candidates); returns
    (M, smallest distance found or inf).
    """
    cut2 = cutoff * cutoff
    dmin2 = np.inf
    m = 0
    for e in range(i.shape[0]):
        a, b = i[e], j[e]
        dx = positions[b, 0] - positions[a, 0] + shift_cart[e, 0]
        dy = positions[b, 1] - positions[a, 1] + shift_cart[e, 1]
        dz = positions[b, 2] - positions[a, 2] + shift_cart[e, 2]
        r2 = dx * dx + dy * dy + dz * dz
        if r2 < cut2:
            D[m, 0] = dx
            D[m, 1] = dy
            D[m, 2] = dz
            keep[m] = e
            oi[m] = a
            oj[m] = b
            if r2 < dmin2:
                dmin2 = r2
            m += 1
    return m, np.sqrt(dmin2)


class NeighborListCache:
    """Verlet-skin neighbor list reused across MD or relaxation steps.

    The list is built with radius ``cutoff + skin`` and rebuilt only when an
    atom moved more than ``skin / 2`` since the last build, or when the cell,
    pbc, the number of atoms or their species changed. Every call filters the
    candidate pairs to ``d < cutoff`` with the current positions, so results
    are exact whatever the skin.

    Parameters
    ----------
    cutoff : float, Å
    skin : float, Å (default 0.5; 0 rebuilds every call)
    bothways : bool, full list (default) or half list (see :func:`pair_list`)

    :meth:`get` returns arrays the caller owns (copies), unless asked for
    views of the cache's reused buffers with ``copy=False`` (so that MD steps
    allocate nothing edge-sized): those stay valid until the next call.

    Attributes
    ----------
    n_builds : int
        How many times the list was built (for diagnostics and tests).
    """

    def __init__(self, cutoff, skin=0.5, bothways=True):
        if not (np.isfinite(cutoff) and cutoff > 0):
            raise ValueError(f"cutoff must be a positive number of Å, got {cutoff}")
        if skin < 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.bothways = bool(bothways)
        self.n_builds = 0
        self._key = None

    def _needs_rebuild(self, positions, cell, pbc, numbers):
        if self._key is None:
            return True
        ref_pos, ref_cell, ref_pbc, ref_numbers = self._key
        if (len(positions) != len(ref_pos) or not np.array_equal(pbc, ref_pbc)
                or not np.array_equal(cell, ref_cell) or not np.array_equal(numbers, ref_numbers)):
            return True
        if len(positions) == 0:
            return False
        disp = positions - ref_pos
        return bool(np.einsum("ij,ij->i", disp, disp).max() > (0.5 * self.skin) ** 2)

    def get(self, positions, cell, pbc, numbers, copy=True):
        """Pairs within the cutoff for the current configuration.

        ``copy=False`` returns views of buffers that the next call overwrites.

        Returns
        -------
        i, j : (n_pairs,) int64, sorted by i
        D : (n_pairs, 3) float64 edge vectors x_j - x_i + S @ cell (Å)
        keep : (n_pairs,) int64, rows of ``self.shifts`` (the integer cell
            shifts S of the current candidate list) for these pairs
        d_min : float, smallest distance found (Å; inf without pairs)
        """
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
        pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
        if self._needs_rebuild(positions, cell, pbc, numbers):
            i, j, S = pair_list(positions, cell, pbc, self.cutoff + self.skin, bothways=self.bothways)
            self._pairs = (i, j, np.ascontiguousarray(S.astype(np.float64) @ cell))
            self.shifts = S
            n = len(i)
            self._out = (np.empty(n, np.int64), np.empty(n, np.int64), np.empty((n, 3)), np.empty(n, np.int64))
            self._key = (positions.copy(), cell.copy(), pbc.copy(), np.array(numbers).copy())
            self.n_builds += 1
        i, j, shift = self._pairs
        oi, oj, D, keep = self._out
        m, d_min = _edges_within(positions, i, j, shift, self.cutoff, oi, oj, D, keep)
        out = (oi[:m], oj[:m], D[:m], keep[:m])
        if copy:
            out = tuple(a.copy() for a in out)
        return (*out, d_min)
