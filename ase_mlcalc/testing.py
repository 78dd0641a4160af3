"""Model-contract checks that every potential family must pass (reusable in tests of new families).

Each ``check_*`` function takes a calculator (an :class:`~ase_mlcalc.MLCalculator`,
or any ASE calculator where stated) and structures, and raises
``AssertionError`` with a message naming the broken property. They check
physics, not snapshots: finite differences, invariances, extensivity,
additivity. A new family gets them all by adding one case to the
parametrised fixture in ``tests/test_model_contract.py``.

Tolerances are for float64; pass looser ones for float32.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from ase import Atoms

__all__ = [
    "check_forces_finite_differences", "check_stress_finite_differences", "check_energies_add_up",
    "check_invariances", "check_supercell_extensivity", "check_periodic_images", "check_batch_equals_single",
    "check_fragments_additive", "check_isolated_atom", "check_empty_atoms", "check_save_load_fresh_process",
    "check_todict_round_trip", "check_results_are_float64", "run_all", "labelled_frames",
]


#: the toy reference: Lennard-Jones parameters (eV, Å) of the noble gases, Lorentz-Berthelot mixing
TOY_LJ = {"epsilon": {"Ar": 0.0104, "Kr": 0.014, "Xe": 0.02}, "sigma": {"Ar": 3.4, "Kr": 3.65, "Xe": 3.95}}


def labelled_frames(n, species=("Ar",), seed=0, repeat=(2, 1, 1), rattle=0.1, a=5.3):
    """``n`` toy training frames: rattled fcc cells (lattice constant ``a`` Å, ``repeat`` conventional
    cells) of the elements in ``species`` (Ar, Kr, Xe; in equal shares at random sites), labelled with
    energy, forces and stress by a Lennard-Jones reference (:data:`TOY_LJ`, cutoff 6 Å)."""
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator

    from .models.lennard_jones import LennardJones

    from ase.data import atomic_numbers

    ref = LennardJones(species=list(TOY_LJ["epsilon"]), **TOY_LJ, rc=6.0)
    frames = []
    for k in range(n):
        rng = np.random.default_rng(seed + k)
        atoms = bulk("Ar", "fcc", a=a, cubic=True) * repeat
        atoms.numbers = [atomic_numbers[species[s]] for s in rng.permutation(len(atoms)) % len(species)]
        atoms.rattle(rattle, seed=seed + k)
        atoms.calc = ref
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                                           stress=atoms.get_stress())
        frames.append(atoms)
    return frames


def _results(calc, atoms, stress=True):
    a = atoms.copy()
    a.calc = calc
    out = {"energy": a.get_potential_energy(), "forces": a.get_forces(), "energies": a.get_potential_energies()}
    if stress and a.pbc.all():
        out["stress"] = a.get_stress()
    return out


def _assert_close(name, got, want, rtol, atol):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {got.shape} != {want.shape}")
    err = np.abs(got - want)
    bound = atol + rtol * np.abs(want)
    if not np.all(err <= bound):
        k = np.unravel_index(np.argmax(err - bound), err.shape) if err.ndim else ()
        raise AssertionError(f"{name}: max deviation {err.max():.3e} (at {k}: {got[k] if k else got} vs "
                             f"{want[k] if k else want}; rtol {rtol}, atol {atol})")


def check_results_are_float64(calc, atoms):
    """energy a float; energies, forces (and stress, stresses for periodic cells) float64 numpy arrays of ASE's shapes."""
    a = atoms.copy()
    a.calc = calc
    e = a.get_potential_energy()
    if not isinstance(e, float):
        raise AssertionError(f"energy is a {type(e).__name__}, not a float")
    shapes = {"forces": (len(a), 3), "energies": (len(a),)}
    if a.pbc.all():
        shapes.update(stress=(6,), stresses=(len(a), 6))
    for name, shape in shapes.items():
        x = a.calc.get_property(name, a)
        if not isinstance(x, np.ndarray) or x.dtype != np.float64 or x.shape != shape:
            raise AssertionError(f"{name}: {type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}, "
                                 f"expected float64 array of shape {shape}")


def check_forces_finite_differences(calc, atoms, delta=1e-4, atol=1e-6, rtol=1e-5, atoms_to_check=4):
    """Forces equal -dE/dx by central differences (step ``delta`` Å) for the first ``atoms_to_check`` atoms."""
    f = _results(calc, atoms, stress=False)["forces"]
    a = atoms.copy()
    a.calc = calc
    for i in range(min(atoms_to_check, len(a))):
        for c in range(3):
            e = []
            for s in (1, -1):
                a.positions[i, c] += s * delta
                e.append(a.get_potential_energy())
                a.positions[i, c] -= s * delta
            _assert_close(f"force[{i}, {c}] vs -dE/dx", f[i, c], -(e[0] - e[1]) / (2 * delta), rtol, atol)


def check_stress_finite_differences(calc, atoms, delta=1e-5, atol=1e-7, rtol=1e-5):
    """Stress equals (1/V) dE/d(strain) by central differences of symmetric strains (3D-periodic cells)."""
    s = _results(calc, atoms)["stress"]
    a = atoms.copy()
    a.calc = calc
    cell, volume = a.cell.array.copy(), a.get_volume()
    pairs = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    for k, (p, q) in enumerate(pairs):
        e = []
        for sign in (1, -1):
            eps = np.eye(3)
            eps[p, q] += sign * delta / (1 if p == q else 2)
            eps[q, p] = eps[p, q]
            a.set_cell(cell @ eps, scale_atoms=True)
            e.append(a.get_potential_energy())
        a.set_cell(cell, scale_atoms=True)
        _assert_close(f"stress[{k}] vs (1/V) dE/d(strain)", s[k], (e[0] - e[1]) / (2 * delta) / volume, rtol, atol)


def check_energies_add_up(calc, atoms, atol=1e-10):
    """Atomic energies sum to the energy; per-atom stresses to the stress (periodic cells)."""
    a = atoms.copy()
    a.calc = calc
    _assert_close("sum of energies", a.get_potential_energies().sum(), a.get_potential_energy(), 1e-12, atol)
    if a.pbc.all():
        _assert_close("sum of stresses", a.get_stresses().sum(0), a.get_stress(), 1e-10, atol)


def check_invariances(calc, atoms, seed=0, atol=1e-9):
    """Translation, rotation (positions and cell together) and permutation leave energy, forces
    (rotated / permuted alike), atomic energies and the stress (rotated) unchanged."""
    rng = np.random.default_rng(seed)
    ref = _results(calc, atoms)
    moved = atoms.copy()
    moved.positions += rng.normal(size=3)
    got = _results(calc, moved)
    for name in ref:
        _assert_close(f"{name} after translation", got[name], ref[name], 1e-9, atol)
    R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(R) < 0:
        R[:, 0] *= -1
    rot = atoms.copy()
    rot.positions = atoms.positions @ R.T
    rot.set_cell(atoms.cell.array @ R.T, scale_atoms=False)
    got = _results(calc, rot)
    _assert_close("energy after rotation", got["energy"], ref["energy"], 1e-9, atol)
    _assert_close("energies after rotation", got["energies"], ref["energies"], 1e-9, atol)
    _assert_close("forces after rotation", got["forces"], ref["forces"] @ R.T, 1e-8, atol)
    if "stress" in ref:
        from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

        s = full_3x3_to_voigt_6_stress(R @ voigt_6_to_full_3x3_stress(ref["stress"]) @ R.T)
        _assert_close("stress after rotation", got["stress"], s, 1e-8, atol)
    perm = rng.permutation(len(atoms))
    got = _results(calc, atoms[perm])
    _assert_close("energy after permutation", got["energy"], ref["energy"], 1e-10, atol)
    _assert_close("forces after permutation", got["forces"], ref["forces"][perm], 1e-9, atol)
    _assert_close("energies after permutation", got["energies"], ref["energies"][perm], 1e-9, atol)


def check_supercell_extensivity(calc, atoms, repeat=(2, 1, 1), atol=1e-9):
    """A supercell has the energy times its size, the same atomic energies, forces and stress (3D-periodic)."""
    ref = _results(calc, atoms)
    n = int(np.prod(repeat))
    got = _results(calc, atoms.repeat(repeat))
    _assert_close("supercell energy / size", got["energy"] / n, ref["energy"], 1e-10, atol)
    _assert_close("supercell forces", got["forces"], np.tile(ref["forces"], (n, 1)), 1e-8, atol)
    _assert_close("supercell energies", got["energies"], np.tile(ref["energies"], n), 1e-8, atol)
    _assert_close("supercell stress", got["stress"], ref["stress"], 1e-8, atol)


def check_periodic_images(calc, atoms, seed=1, atol=1e-9):
    """Moving atoms by lattice vectors (and wrapping them) changes nothing (periodic directions)."""
    rng = np.random.default_rng(seed)
    ref = _results(calc, atoms)
    shifted = atoms.copy()
    pbc = atoms.pbc
    shifts = rng.integers(-2, 3, size=(len(atoms), 3)) * pbc
    shifted.positions += shifts @ atoms.cell.array
    got = _results(calc, shifted)
    for name in ref:
        _assert_close(f"{name} after shifting atoms by lattice vectors", got[name], ref[name], 1e-9, atol)


def check_batch_equals_single(model, frames, atol=1e-10):
    """Energies and forces of a batched graph equal those of each structure alone."""
    from .training import frame_graphs, predict

    graphs = frame_graphs(frames, model.cutoff, model.species, device=model.e0.device, dtype=model.e0.dtype,
                          full_list=model.full_list)
    e_batch, f_batch = predict(model, graphs, batch_size=len(graphs))
    single = [predict(model, [g], batch_size=1) for g in graphs]
    _assert_close("batched energies", e_batch, np.concatenate([s[0] for s in single]), 1e-12, atol)
    _assert_close("batched forces", f_batch, np.concatenate([s[1] for s in single]), 1e-10, atol)


def check_fragments_additive(calc, fragment_a, fragment_b, separation=None, atol=1e-9):
    """Two clusters further apart than the cutoff: the energy is the sum, forces those of each alone."""
    cutoff = calc.model.cutoff
    a, b = fragment_a.copy(), fragment_b.copy()
    for x in (a, b):
        x.pbc = False
        x.cell = np.zeros((3, 3))
    gap = separation or 2.0 * cutoff
    b.positions += a.positions.max(0) - b.positions.min(0) + [gap, 0, 0]
    ra, rb, rab = _results(calc, a), _results(calc, b), _results(calc, a + b)
    _assert_close("energy of separated fragments", rab["energy"], ra["energy"] + rb["energy"], 1e-10, atol)
    _assert_close("forces of separated fragments", rab["forces"], np.concatenate([ra["forces"], rb["forces"]]),
                  1e-9, atol)


def check_isolated_atom(calc, symbol, e0=None, atol=1e-10):
    """An atom without neighbours (in vacuum or in a periodic cell larger than the cutoff) has the
    energy ``e0`` of its element (the model's e0 by default), no force, and no stress."""
    if e0 is None:
        model = calc.model
        from ase.data import atomic_numbers

        e0 = float(model.e0[list(model.species).index(atomic_numbers[symbol])])
    box = 2.5 * calc.model.cutoff
    for atom in (Atoms(symbol, positions=[[0.3, 0.2, 0.1]]),
                 Atoms(symbol, positions=[[0.3, 0.2, 0.1]], cell=[box] * 3, pbc=True)):
        got = _results(calc, atom)
        _assert_close(f"energy of an isolated {symbol} atom (pbc={atom.pbc.all()})", got["energy"], e0, 1e-12, atol)
        _assert_close(f"force on an isolated {symbol} atom", got["forces"], np.zeros((1, 3)), 0, atol)
        if "stress" in got:
            _assert_close(f"stress of an isolated {symbol} atom", got["stress"], np.zeros(6), 0, atol)


def check_empty_atoms(calc):
    """An empty Atoms has energy 0, forces of shape (0, 3) and atomic energies of shape (0,), as ASE's LJ."""
    got = _results(calc, Atoms(), stress=False)
    if got["energy"] != 0.0:
        raise AssertionError(f"energy of an empty Atoms is {got['energy']}, not 0")
    if got["forces"].shape != (0, 3) or got["energies"].shape != (0,):
        raise AssertionError(f"empty Atoms: forces {got['forces'].shape}, energies {got['energies'].shape}")


def check_save_load_fresh_process(calc, atoms, tmp_dir):
    """Saved, then loaded by :func:`ase_mlcalc.load` in a new Python process: bit-identical energy,
    forces and stress."""
    path = os.path.join(tmp_dir, "model_contract.pt")
    out = os.path.join(tmp_dir, "model_contract.npz")
    structure = os.path.join(tmp_dir, "model_contract.extxyz")
    calc.save(path)
    import ase.io

    ase.io.write(structure, atoms)
    code = ("import sys, numpy as np, ase.io, ase_mlcalc\n"
            "a = ase.io.read(sys.argv[2]); a.calc = ase_mlcalc.load(sys.argv[1], device=sys.argv[4])\n"
            "r = dict(energy=a.get_potential_energy(), forces=a.get_forces())\n"
            "r.update(stress=a.get_stress()) if a.pbc.all() else None\n"
            "np.savez(sys.argv[3], **r)\n")
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code, path, structure, out, calc.parameters["device"]],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"loading the saved model in a fresh process failed:\n{proc.stderr[-2000:]}")
    a = ase.io.read(structure)  # the same positions as the other process saw (extxyz round trip)
    ref = _results(calc, a)
    got = np.load(out)
    for name in got.files:
        if not np.array_equal(got[name], ref[name]):
            raise AssertionError(f"{name} of the model loaded in a fresh process differs: max "
                                 f"{np.abs(got[name] - ref[name]).max():.3e}")


def check_todict_round_trip(calc, atoms, constructor=None):
    """``constructor(**calc.todict())`` (the calculator's own class by default) gives the same results."""
    constructor = constructor or type(calc)
    other = constructor(**calc.todict())
    ref, got = _results(calc, atoms), _results(other, atoms)
    for name in ref:
        if not np.array_equal(got[name], ref[name]):
            raise AssertionError(f"{name} of {constructor.__name__}(**calc.todict()) differs: max "
                                 f"{np.abs(np.asarray(got[name]) - ref[name]).max():.3e}")


def run_all(calc, crystal, molecule, tmp_dir, *, isolated_atom=True, atol=1e-9):
    """Every check above on one calculator: ``crystal`` a small 3D-periodic, rattled structure
    (forces and stress non-zero), ``molecule`` a small cluster without a cell."""
    check_results_are_float64(calc, crystal)
    check_forces_finite_differences(calc, crystal)
    check_forces_finite_differences(calc, molecule)
    check_stress_finite_differences(calc, crystal)
    check_energies_add_up(calc, crystal)
    check_invariances(calc, crystal, atol=atol)
    check_invariances(calc, molecule, atol=atol)
    check_supercell_extensivity(calc, crystal, atol=atol)
    check_periodic_images(calc, crystal, atol=atol)
    check_batch_equals_single(calc.model, [crystal, molecule, crystal.repeat((1, 1, 2))])
    check_fragments_additive(calc, molecule, molecule[::-1])
    if isolated_atom:
        for symbol in set(crystal.get_chemical_symbols()):
            check_isolated_atom(calc, symbol)
    check_empty_atoms(calc)
    check_save_load_fresh_process(calc, crystal, tmp_dir)
    check_todict_round_trip(calc, crystal)
