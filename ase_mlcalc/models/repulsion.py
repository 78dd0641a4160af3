"""A screened nuclear repulsion (ZBL) below the distances a fitted model has seen: a wall where it has no data.

A network (or any fitted potential) is unconstrained at interatomic distances shorter than any in its
training data, and MD finds such holes: a BPNN of acetylacetone fitted to 300 K DFT frames let two
carbon atoms fall to 0.09 Å within 6 ps at 300 K. This term adds, per pair of atoms i, j closer than
``r_outer[s_i, s_j]``, the universal ZBL repulsion switched off smoothly towards ``r_outer``::

    E_ij = Z_i Z_j e^2 / (4 pi eps0 r) * phi(r / a) * s(r),   a = 0.46850 Å / (Z_i^0.23 + Z_j^0.23)
    phi(x) = 0.18175 exp(-3.19980 x) + 0.50986 exp(-0.94229 x) + 0.28022 exp(-0.40290 x) + 0.02817 exp(-0.20162 x)
    s(r) = 1 for r <= r_inner, (1 + cos(pi (r - r_inner) / (r_outer - r_inner))) / 2 between, 0 for r >= r_outer

(J. F. Ziegler, J. P. Biersack and U. Littmark, *The Stopping and Range of Ions in Solids*, Pergamon
1985; the same screening function and constants as LAMMPS's ``pair_style zbl``, which switches with a
polynomial in the force instead and shifts the energy by a constant). e^2 / (4 pi eps0) is taken from
ASE's units (Hartree * Bohr = 14.39964 eV Å).

:func:`ase_mlcalc.training.fit_bpnn` sets ``r_outer`` to 0.8 times the shortest distance of each species
pair in its training frames, or 0.8 times the sum of the two covalent radii (``ase.data.covalent_radii``)
where that is shorter, and ``r_inner`` to 0.75 ``r_outer`` (0.6 times the shortest distance). The term is then exactly zero on every training frame (the fit never sees it) and on test
frames a little outside the data (at 1.0 times the shortest distance, 9 of acetylacetone's 650 test_MD_300K
frames, slightly closer than any training frame, got force errors up to 4 eV/Å from the switch; at 0.8
none changes). It guards against collapse only, not against distances merely rarer than the data's
(acetylacetone's shortest O-O distance is 2.4 Å, the covalent sum 1.3 Å) nor against wrong chemistry at
ordinary distances. Each pair's energy is split equally between its two atoms (per-atom energies add up).
"""

from __future__ import annotations

import numpy as np
import torch
from ase.data import covalent_radii
from ase.units import Bohr, Hartree

#: ZBL universal screening function: coefficients and exponents (Ziegler, Biersack, Littmark 1985)
ZBL_COEFFICIENTS = (0.18175, 0.50986, 0.28022, 0.02817)
ZBL_EXPONENTS = (3.19980, 0.94229, 0.40290, 0.20162)
ZBL_SCREENING_LENGTH = 0.46850  # Å
COULOMB = Hartree * Bohr  # e^2 / (4 pi eps0), eV Å
#: r_outer / (shortest training distance, or covalent radii sum) and r_inner / r_outer that fit_bpnn uses
OUTER_FRACTION = 0.8
INNER_FRACTION = 0.75


def zbl_energy(r, z_i, z_j):
    """Unswitched ZBL pair energy (eV) at distances ``r`` (Å) of atoms with atomic numbers ``z_i``, ``z_j``
    (tensors or numbers that broadcast with ``r``)."""
    z_i = torch.as_tensor(z_i, dtype=r.dtype, device=r.device)
    z_j = torch.as_tensor(z_j, dtype=r.dtype, device=r.device)
    x = r * (z_i ** 0.23 + z_j ** 0.23) / ZBL_SCREENING_LENGTH
    phi = sum(c * torch.exp(-b * x) for c, b in zip(ZBL_COEFFICIENTS, ZBL_EXPONENTS))
    return COULOMB * z_i * z_j / r * phi


def switch(r, r_inner, r_outer):
    """s(r): 1 below ``r_inner``, 0 above ``r_outer``, a cosine step between (continuous first derivative)."""
    t = ((r - r_inner) / (r_outer - r_inner)).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(np.pi * t))


class CoreRepulsion(torch.nn.Module):
    """ZBL repulsion below per-species-pair distances (see the module docstring).

    Parameters
    ----------
    species : atomic numbers, in the model's channel order

    Buffers
    -------
    r_outer, r_inner : (n_species, n_species) Å, symmetric. Until :meth:`set_radii` or
        :meth:`fit_to_distances` is called, r_outer is 0.8 times the sum of the covalent radii
        (``ase.data.covalent_radii``), r_inner 0.75 r_outer.
    """

    kind = "zbl"

    def __init__(self, species):
        super().__init__()
        z = np.asarray(species, dtype=np.float64)
        self.register_buffer("z", torch.as_tensor(z))
        rc = np.asarray([covalent_radii[int(k)] for k in species])
        r_out = OUTER_FRACTION * (rc[:, None] + rc[None, :])
        self.register_buffer("r_outer", torch.as_tensor(r_out))
        self.register_buffer("r_inner", torch.as_tensor(INNER_FRACTION * r_out))

    def set_radii(self, r_outer, inner_fraction=INNER_FRACTION):
        """Set ``r_outer`` (n_species, n_species) Å (NaN entries keep their value) and r_inner =
        ``inner_fraction`` r_outer. ValueError for a non-positive, asymmetric or wrongly shaped matrix."""
        r = np.array(r_outer, dtype=np.float64)
        S = len(self.z)
        if r.shape != (S, S):
            raise ValueError(f"r_outer must have shape ({S}, {S}), got {r.shape}")
        r = np.where(np.isfinite(r), r, self.r_outer.cpu().numpy())
        if np.any(r <= 0) or not np.allclose(r, r.T):
            raise ValueError(f"r_outer must be a symmetric matrix of positive distances (Å), got {r.tolist()}")
        if not 0 < inner_fraction < 1:
            raise ValueError(f"inner_fraction must lie in (0, 1), got {inner_fraction!r}")
        with torch.no_grad():
            self.r_outer.copy_(torch.as_tensor(r))
            self.r_inner.copy_(torch.as_tensor(inner_fraction * r))

    def fit_to_distances(self, shortest):
        """Lower ``r_outer`` to 0.8 times ``shortest`` (n_species, n_species) Å, the shortest distances of
        the data (NaN: a pair the data lack, left as it is); never raises it, so a warm start on new
        frames keeps the term zero on the old ones."""
        self.set_radii(np.fmin(OUTER_FRACTION * np.asarray(shortest, dtype=np.float64),
                               self.r_outer.cpu().numpy()))

    def atomic_energies(self, graph):
        """(n_centers,) eV: half of every pair term of the atom's edges (a full list holds both directions)."""
        dtype = graph.edge_vectors.dtype
        out = graph.edge_vectors.new_zeros(graph.n_centers)
        if len(graph.centers) == 0:
            return out
        sidx = graph.tensor("species_index")
        ci, nj = graph.tensor("centers"), graph.tensor("neighbors")
        si, sj = sidx[ci], sidx[nj]
        r_out = self.r_outer.to(dtype)[si, sj]
        r = graph.edge_vectors.norm(dim=1)
        close = torch.nonzero(r < r_out).squeeze(1)
        if close.numel() == 0:
            return out
        r, si, sj = r[close], si[close], sj[close]
        z = self.z.to(dtype)
        e = zbl_energy(r, z[si], z[sj]) * switch(r, self.r_inner.to(dtype)[si, sj], r_out[close])
        half = 0.5 if graph.full_list else 1.0
        return out.index_add(0, ci[close], half * e)


def shortest_pair_distances(graphs, n_species):
    """(n_species, n_species) Å: the shortest distance of each species pair over the edges of ``graphs``
    (NaN for a pair that never occurs)."""
    d = np.full((n_species, n_species), np.inf)
    for g in graphs:
        if len(g.centers) == 0:
            continue
        r = g.edge_vectors.detach().norm(dim=1).cpu().numpy()
        si, sj = g.species_index[g.centers], g.species_index[g.neighbors]
        np.minimum.at(d, (si, sj), r)
    d = np.minimum(d, d.T)
    d[~np.isfinite(d)] = np.nan
    return d
