"""Validation: bcc Mo lattice constant, bulk modulus and C11/C12/C44 of a GAP trained on the mlearn Mo data,
against PBE literature values and against the DFT frames of the data set themselves.

1. Fit ``fit_gap(train_frames, n_sparse=1000)`` (mlearn GAP recipe otherwise) to
   examples/data/Mo_train.extxyz.xz, or load ``--model``.
2. Model properties with the workflows: relaxed lattice constant; Birch-Murnaghan
   EOS (V0, B, B'); elastic constants from stress-strain central differences.
3. DFT-frames values. The "Elastic" config_type holds 54-atom bcc supercells
   (3x3x3 conventional cells of a = 3.1676 Å) under uniaxial strains of
   ±2..10% along x, y, z and simple shears of up to 0.1 (with thermal
   displacements), plus a 2-atom ground-state cell. The data carry energies and
   forces but no stresses, so the constants come from the curvature of E(strain):
   with the Lagrangian strain eta of each frame relative to the unstrained cell,
       uniaxial:  E/V = e0 - P0 eta + C11 eta^2 / 2 + c3 eta^3 + c4 eta^4
       shear:     E/V = e0 + (C44 - P0) gamma^2 / 2 + d4 gamma^4
   (P0: pressure of the reference cell). These strains never change two normal
   components at once, so C12 -- and with it B = (C11 + 2 C12)/3 -- is not
   determined by these frames, and an E(V) Birch-Murnaghan fit of them would mix
   uniaxial and volumetric response, so none is made. The same fits applied to the
   model's energies of the same frames give a like-for-like comparison.
4. Literature (PBE): Materials Project mp-129, elastic tensor from de Jong et al.,
   Sci. Data 2, 150009 (2015), as quoted by Zuo et al., J. Phys. Chem. A 124, 731
   (2020) (the mlearn benchmark, whose DFT data these are).

Usage: python examples/validate_mo.py [--model FILE] [--out mo_gap_full.pt]
"""

import argparse
import os
import time

import numpy as np
from ase import units
from ase.build import bulk

import ase_mlcalc
from ase_mlcalc.training import fit_gap, read_frames, report
from ase_mlcalc.workflows import elastic_constants, equation_of_state, plot_eos, relax

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")

#: PBE reference values for bcc Mo (Materials Project mp-129; de Jong et al. 2015 elastic
#: workflow), as tabulated for the mlearn benchmark by Zuo et al. (2020).
LITERATURE = {"a0": 3.168, "B": 262.0, "C11": 472.0, "C12": 158.0, "C44": 106.0}


def lagrangian_strain(cell, cell_ref):
    """(3, 3) Green-Lagrange strain of ``cell`` relative to ``cell_ref`` (rows are cell vectors); rotation-free."""
    # cell = cell_ref @ F^T, so F^T F = R^-1 (cell cell^T) R^-T with R = cell_ref: only the metric enters.
    R_inv = np.linalg.inv(cell_ref)
    return 0.5 * (R_inv @ (cell @ cell.T) @ R_inv.T - np.eye(3))


def classify_elastic_frames(frames):
    """The 54-atom 'Elastic' frames as (reference, [(eta, frame)] uniaxial, [(gamma, frame)] simple shear)."""
    big = [f for f in frames if f.info.get("config_type") == "Elastic" and len(f) == 54]
    ref = [f for f in big if np.allclose(f.cell.cellpar(), f.cell.cellpar()[[0, 0, 0, 3, 3, 3]], atol=1e-6)
           and np.allclose(f.cell.angles(), 90)]
    if len(ref) != 1:
        raise SystemExit(f"expected one unstrained 54-atom Elastic frame, found {len(ref)}")
    ref = ref[0]
    uniaxial, shear = [(0.0, ref)], [(0.0, ref)]
    for f in big:
        if f is ref:
            continue
        eta = lagrangian_strain(f.cell.array, ref.cell.array)
        off = eta[np.triu_indices(3, 1)]
        diag = np.diag(eta)
        if np.abs(off).max() < 1e-8 and np.sum(np.abs(diag) > 1e-8) == 1:
            uniaxial.append((float(diag[np.argmax(np.abs(diag))]), f))
        elif np.sum(np.abs(off) > 1e-8) == 1:
            # simple shear: eta_ab = gamma / 2 (engineering gamma = 2 eta_ab)
            shear.append((float(2 * off[np.argmax(np.abs(off))]), f))
    return ref, uniaxial, shear


def strain_energy_fit(energies, uniaxial, shear, volume):
    """C11, C44 and P0 (GPa) with standard errors from the E(strain) polynomials of the module docstring."""
    eu = np.array([energies[id(f)] for _, f in uniaxial]) / volume
    x = np.array([s for s, _ in uniaxial])
    p, cov = np.polyfit(x, eu, 4, cov=True)  # highest power first
    c11, dc11 = 2 * p[2], 2 * np.sqrt(cov[2, 2])
    p0, dp0 = -p[3], np.sqrt(cov[3, 3])
    es = np.array([energies[id(f)] for _, f in shear]) / volume
    g = np.array([s for s, _ in shear])
    A = np.stack([np.ones_like(g), g ** 2, g ** 4], axis=1)  # even in gamma
    q, res, *_ = np.linalg.lstsq(A, es, rcond=None)
    dof = max(1, len(g) - 3)
    qcov = np.linalg.inv(A.T @ A) * (np.sum((A @ q - es) ** 2) / dof)
    c44 = 2 * q[1] + p0
    dc44 = np.sqrt(4 * qcov[1, 1] + dp0 ** 2)
    g_ = units.GPa
    return {"C11": (c11 / g_, dc11 / g_), "C44": (c44 / g_, dc44 / g_), "P0": (p0 / g_, dp0 / g_),
            "rms_uniaxial": float(np.sqrt(np.mean((np.polyval(p, x) - eu) ** 2)) * volume / 54 * 1e3),
            "rms_shear": float(np.sqrt(np.mean((A @ q - es) ** 2)) * volume / 54 * 1e3)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model file to validate (any family) instead of training the GAP")
    p.add_argument("--out", default="mo_gap_full.pt", help="where to save the trained GAP")
    p.add_argument("--n-sparse", type=int, default=1000)
    args = p.parse_args()

    train = read_frames(os.path.join(DATA, "Mo_train.extxyz.xz"))
    test = read_frames(os.path.join(DATA, "Mo_test.extxyz.xz"))
    if args.model:
        calc = ase_mlcalc.load(args.model)
        print(f"loaded {args.model}")
    else:
        t = time.perf_counter()
        calc = fit_gap(train, n_sparse=args.n_sparse, progress=False)
        print(f"fitted GAP (n_sparse={args.n_sparse}, mlearn recipe) on {len(train)} frames in "
              f"{time.perf_counter() - t:.0f} s")
        calc.save(args.out)
        print(f"saved to {args.out}")
    report(calc, {"train": train, "test": test})

    # ---- model, through the workflows
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True)
    rel = relax(atoms, calc, fmax=1e-5)
    # Linear strains within ±1%: B is then the local curvature at V0 (what C_ij measure too).
    # Wider ranges test the model's E(V) away from the training volumes (printed below).
    eos = equation_of_state(atoms, calc, max_strain=0.01, n_points=11)
    eos_wide = {s: equation_of_state(atoms, calc, max_strain=s, n_points=13) for s in (0.02, 0.04)}
    plot_eos(eos, "validate_mo_eos.png", title="bcc Mo, GAP (full mlearn training set)")
    el = elastic_constants(atoms, calc, strain=1e-3)
    print(rel.summary())
    print(eos.summary())
    for s, e in eos_wide.items():
        print(f"EOS over ±{s:.0%} linear strain: B = {e.bulk_modulus:.1f} GPa, B' = {e.bulk_modulus_derivative:.2f}, "
              f"fit RMS residual {e.rms_residual * 1e3:.3f} meV/atom")
    print(el.summary())

    # ---- DFT frames and the model on the same frames, same fits
    frames = train + test
    ref, uniaxial, shear = classify_elastic_frames(frames)
    print(f"Elastic frames: {len(uniaxial) - 1} uniaxial (|eta| <= {max(abs(s) for s, _ in uniaxial):.3f}), "
          f"{len(shear) - 1} simple shear (|gamma| <= {max(abs(s) for s, _ in shear):.3f}); reference a = "
          f"{ref.cell.lengths()[0] / 3:.4f} Å")
    used = {id(f): f for _, f in uniaxial + shear}
    e_dft = {k: f.get_potential_energy() for k, f in used.items()}
    e_model = {}
    for k, f in used.items():
        a = f.copy()
        a.calc = calc
        e_model[k] = a.get_potential_energy()
    V = ref.get_volume()
    fit_dft = strain_energy_fit(e_dft, uniaxial, shear, V)
    fit_model = strain_energy_fit(e_model, uniaxial, shear, V)
    gs = [f for f in frames if f.info.get("config_type") == "Elastic" and len(f) == 2]
    a_gs = gs[0].cell.lengths()[0] if gs else float("nan")

    def pm(v, digits=0):
        return f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}"

    c = el.cubic
    rows = [
        ("a0 (Å)", f"{rel.lattice_constant:.4f}", f"{eos.lattice_constant:.4f} (EOS)", "-",
         f"{a_gs:.4f} (2-atom cell)", f"{LITERATURE['a0']:.3f}"),
        ("B (GPa)", f"{(c['C11'] + 2 * c['C12']) / 3:.0f}",
         f"{eos.bulk_modulus:.0f} (EOS, B'={eos.bulk_modulus_derivative:.1f})",
         "-", "- (no volumetric strains)", f"{LITERATURE['B']:.0f}"),
        ("C11 (GPa)", f"{c['C11']:.0f}", "", pm(fit_model["C11"]), pm(fit_dft["C11"]), f"{LITERATURE['C11']:.0f}"),
        ("C12 (GPa)", f"{c['C12']:.0f}", "", "-", "- (not determined)", f"{LITERATURE['C12']:.0f}"),
        ("C44 (GPa)", f"{c['C44']:.0f}", "", pm(fit_model["C44"]), pm(fit_dft["C44"]), f"{LITERATURE['C44']:.0f}"),
        ("P0 of ref. cell (GPa)", "", "", pm(fit_model["P0"], 1), pm(fit_dft["P0"], 1), ""),
    ]
    head = ("quantity", "GAP stress-strain", "GAP EOS", "GAP on frames (fit)", "DFT frames (fit)", "PBE literature")
    widths = [max(len(str(r[i])) for r in rows + [head]) + 2 for i in range(len(head))]
    print()
    for r in [head] + rows:
        print("".join(str(v).ljust(w) for v, w in zip(r, widths)))
    print(f"\nstrain-energy fit residuals (meV/atom): DFT uniaxial {fit_dft['rms_uniaxial']:.2f}, shear "
          f"{fit_dft['rms_shear']:.2f}; GAP uniaxial {fit_model['rms_uniaxial']:.2f}, "
          f"shear {fit_model['rms_shear']:.2f}")
    print("literature: Materials Project mp-129 (PBE), de Jong et al., Sci. Data 2, 150009 (2015); "
          "as used by Zuo et al., J. Phys. Chem. A 124, 731 (2020)")


if __name__ == "__main__":
    main()
