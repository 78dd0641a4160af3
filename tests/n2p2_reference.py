"""Independent references for the n2p2 tests (no ase_mlcalc code inside): plain-Python symmetry
functions (loops over images, pairs and triplets, straight from the formulas of the n2p2
documentation, "Symmetry function types" and "Cutoff functions",
https://compphysvienna.github.io/n2p2/api/symmetry_function_types.html and
.../api/cutoff_functions.html), a plain numpy n2p2 prediction from the raw files (file units),
and a generator of synthetic n2p2 potential directories that exercise the options the reader
supports (used by tests/test_n2p2.py and the "n2p2" case of tests/test_model_contract.py)."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np

TANH_PRE = ((math.e + 1 / math.e) / (math.e - 1 / math.e)) ** 3


def fc(r, rc, ctype, alpha):
    """n2p2 cutoff functions (CutoffFunction.h documentation), 0 for r >= rc."""
    if r >= rc:
        return 0.0
    if ctype == 2:
        return math.tanh(1 - r / rc) ** 3
    if ctype == 3:
        return TANH_PRE * math.tanh(1 - r / rc) ** 3
    rci = alpha * rc
    if r < rci:
        return 1.0
    x = (r - rci) / (rc - rci)
    return {0: lambda: 1.0,
            1: lambda: 0.5 * (math.cos(math.pi * x) + 1),
            4: lambda: math.exp(1 - 1 / (1 - x * x)),
            5: lambda: (2 * x - 3) * x ** 2 + 1,
            6: lambda: ((15 - 6 * x) * x - 10) * x ** 3 + 1,
            7: lambda: (x * (x * (20 * x - 70) + 84) - 35) * x ** 4 + 1,
            8: lambda: (x * (x * ((315 - 70 * x) * x - 540) + 420) - 126) * x ** 5 + 1}[ctype]()


def neighbours(atoms, rmax):
    """[(vector, atomic number)] per atom, all periodic images, by brute force."""
    pos, cell = atoms.positions, atoms.cell.array
    reps = []
    for k, p in enumerate(atoms.pbc):
        if not p:
            reps.append(range(1))
            continue
        # plane spacing along k
        other = [cell[m] for m in range(3) if m != k]
        nrm = np.cross(*other)
        d = abs(cell[k] @ nrm) / np.linalg.norm(nrm)
        n = int(math.ceil(rmax / d)) + 1
        reps.append(range(-n, n + 1))
    shifts = [np.array(s) @ cell for s in itertools.product(*reps)]
    out = []
    for i in range(len(atoms)):
        nb = []
        for j in range(len(atoms)):
            for sh in shifts:
                v = pos[j] + sh - pos[i]
                d = np.linalg.norm(v)
                if 1e-10 < d < rmax:
                    nb.append((v, int(atoms.numbers[j])))
        out.append(nb)
    return out


def brute_force_sf(atoms, functions, ctype, alpha):
    """Symmetry function values, one list per atom (the functions whose "center" is that
    atom's element, in the given order). ``functions``: dicts as N2P2SymmetryFunctions takes
    them, with atomic numbers for the elements. Plain loops over j and over pairs j < k."""
    rmax = max(sf["rc"] for sf in functions)
    nbs = neighbours(atoms, rmax)
    result = []
    for i, z in enumerate(atoms.numbers):
        vals = []
        for sf in (f for f in functions if f["center"] == z):
            rc, eta, rs = sf["rc"], sf["eta"], sf.get("rs", 0.0)
            g = 0.0
            if sf["type"] == 2:
                for v, zj in nbs[i]:
                    if zj == sf["e1"]:
                        r = np.linalg.norm(v)
                        g += math.exp(-eta * (r - rs) ** 2) * fc(r, rc, ctype, alpha)
            else:
                lam, zeta = sf["lambda"], sf["zeta"]
                for (u, zj), (w, zk) in itertools.combinations(nbs[i], 2):
                    if sorted((zj, zk)) != sorted((sf["e1"], sf["e2"])):
                        continue
                    rij, rik, rjk = np.linalg.norm(u), np.linalg.norm(w), np.linalg.norm(w - u)
                    cos = u @ w / (rij * rik)
                    base = 1 + lam * cos
                    ang = base ** zeta if base > 0 else 0.0
                    if sf["type"] == 3:
                        g += (2 ** (1 - zeta) * ang
                              * math.exp(-eta * ((rij - rs) ** 2 + (rik - rs) ** 2 + (rjk - rs) ** 2))
                              * fc(rij, rc, ctype, alpha) * fc(rik, rc, ctype, alpha) * fc(rjk, rc, ctype, alpha))
                    else:
                        g += (2 ** (1 - zeta) * ang * math.exp(-eta * ((rij - rs) ** 2 + (rik - rs) ** 2))
                              * fc(rij, rc, ctype, alpha) * fc(rik, rc, ctype, alpha))
            vals.append(g)
        result.append(vals)
    return result


# ----------------------------------------------------------------------------- numpy n2p2 prediction

ACT = {"l": lambda x: x, "t": np.tanh, "s": lambda x: 1 / (1 + np.exp(-x)), "p": lambda x: np.log1p(np.exp(x)),
       "r": lambda x: np.maximum(x, 0), "g": lambda x: np.exp(-x * x / 2), "c": np.cos,
       "S": lambda x: 1 - 1 / (1 + np.exp(-x)), "e": lambda x: np.exp(-x), "h": lambda x: x * x}


def numpy_prediction(directory, atoms, L, U, spec):
    """Energy (eV) of ``atoms`` from the files in ``directory`` using only ``spec`` (what the
    generator wrote: sorted functions per element in file units, scaling mode, topology,
    normalisation) and the raw weights: an implementation independent of the reader."""
    from ase import Atoms

    a = Atoms(atoms.numbers, positions=atoms.positions / L, cell=atoms.cell.array / L, pbc=atoms.pbc)
    allf = [f for z in spec["elements"] for f in spec["functions"][z]]
    G = brute_force_sf(a, allf, spec["cutoff_type"], spec["alpha"])
    E = 0.0
    for i, z in enumerate(a.numbers):
        g = np.array(G[i])
        st = np.array(spec["scaling"][z])  # (F, 4): min max mean sigma
        smin, smax = spec["smin"], spec["smax"]
        mode = spec["scaling_mode"]
        if mode == "scale":
            gs = smin + (smax - smin) * (g - st[:, 0]) / (st[:, 1] - st[:, 0])
        elif mode == "center":
            gs = g - st[:, 2]
        elif mode == "scalecenter":
            gs = smin + (smax - smin) * (g - st[:, 2]) / (st[:, 1] - st[:, 0])
        elif mode == "sigma":
            gs = smin + (smax - smin) * (g - st[:, 2]) / st[:, 3]
        else:
            gs = g
        w = np.loadtxt(os.path.join(directory, f"weights.{z:03d}.data"), usecols=0, comments="#")
        layers, acts = spec["layers"][z], spec["activations"][z]
        x, c = gs, 0
        for lay in range(1, len(layers)):
            n_in, n_out = layers[lay - 1], layers[lay]
            W = w[c:c + n_in * n_out].reshape(n_in, n_out)
            c += n_in * n_out
            b = w[c:c + n_out]
            c += n_out
            pre = x @ W + b
            if spec["normalize_nodes"]:
                pre = pre / n_in
            x = ACT[acts[lay - 1]](pre)
        e = x[0] / spec["conv_energy"] + spec["mean_energy"] + spec["atom_energy"][z]
        E += e
    return E * U


# ----------------------------------------------------------------------------- synthetic potentials


def write_synthetic_nnp(directory, rng, elements=("O", "H"), cutoff_type=1, alpha=0.0, scaling_mode="scale",
                        normalize=False, normalize_nodes=False, activations=None,
                        rc=(7.0, 8.5), smin=-1.0, smax=1.0, train_frames=None, L=1.0):
    """Write input.nn / scaling.data / weights.ZZZ.data with radial (2), narrow (3) and wide (9)
    angular functions per element (two cutoff radii, rs != 0, non-integer zeta, mixed neighbour
    elements), lines written in a shuffled order. Returns ``spec`` (n2p2-sorted functions per
    element in file units, scaling table, topology) for :func:`numpy_prediction`.

    The scaling statistics come from ``train_frames`` (ase Atoms in Å, converted with ``L``) when
    given, else they are made up."""
    from ase.data import atomic_numbers

    os.makedirs(directory, exist_ok=True)
    els = sorted(elements, key=lambda e: atomic_numbers[e])
    lines, funcs = [], {atomic_numbers[e]: [] for e in els}
    for c in elements:
        for e1 in elements:
            for eta, rs in ((0.01, 0.0), (0.05, 1.5), (0.3, 2.5)):
                lines.append(f"symfunction_short {c} 2 {e1} {eta} {rs} {rc[0] if eta > 0.02 else rc[1]}")
        for e1, e2 in itertools.combinations_with_replacement(elements, 2):
            for t, eta, lam, zeta, r, rs in ((3, 0.01, 1, 1.0, rc[1], None), (3, 0.02, -1, 2.0, rc[0], 0.5),
                                             (9, 0.01, 1, 3.5, rc[1], None), (9, 0.03, -1, 1.0, rc[0], 1.0)):
                lines.append(f"symfunction_short {c} {t} {e1} {e2} {eta} {lam} {zeta} {r}"
                             + (f" {rs}" if rs is not None else ""))
    rng.shuffle(lines)
    for ln in lines:
        tok = ln.split()
        c, t = atomic_numbers[tok[1]], int(tok[2])
        if t == 2:
            sf = {"center": c, "type": 2, "e1": atomic_numbers[tok[3]], "eta": float(tok[4]), "rs": float(tok[5]),
                  "rc": float(tok[6])}
        else:
            z1, z2 = sorted((atomic_numbers[tok[3]], atomic_numbers[tok[4]]))
            sf = {"center": c, "type": t, "e1": z1, "e2": z2, "eta": float(tok[5]), "lambda": float(tok[6]),
                  "zeta": float(tok[7]), "rc": float(tok[8]), "rs": float(tok[9]) if len(tok) > 9 else 0.0}
        funcs[c].append(sf)

    def key(sf):
        if sf["type"] == 2:
            return (2, sf["rc"], sf["eta"], sf["rs"], 0, 0, sf["e1"], 0)
        return (sf["type"], sf["rc"], sf["eta"], sf["rs"], sf["zeta"], sf["lambda"], sf["e1"], sf["e2"])

    for z in funcs:
        funcs[z].sort(key=key)
    hidden = {atomic_numbers[e]: [6, 4] for e in els}
    acts = activations or ["t", "t", "l"]
    head = [f"number_of_elements {len(elements)}", "elements " + " ".join(elements),
            f"cutoff_type {cutoff_type} {alpha}" if alpha else f"cutoff_type {cutoff_type}",
            "global_hidden_layers_short 2", "global_nodes_short 6 4", "global_activation_short " + " ".join(acts),
            "use_short_forces   # training only", "epochs 10", "kalman_type 0   ! RuNNer-style comment"]
    ae = {atomic_numbers[e]: -0.5 * (k + 1) for k, e in enumerate(els)}
    for e in els:
        head.append(f"atom_energy {e} {ae[atomic_numbers[e]]}")
    mean_energy, conv_energy = 0.0, 1.0
    if normalize:
        mean_energy, conv_energy = -0.37, 2.5
        head += [f"mean_energy {mean_energy}", f"conv_energy {conv_energy}", "conv_length 1.7"]
    if normalize_nodes:
        head.append("normalize_nodes")
    head += {"scale": ["scale_symmetry_functions"], "center": ["center_symmetry_functions"],
             "scalecenter": ["scale_symmetry_functions", "center_symmetry_functions"],
             "sigma": ["scale_symmetry_functions_sigma"], "none": []}[scaling_mode]
    head += [f"scale_min_short {smin}", f"scale_max_short {smax}"]
    with open(os.path.join(directory, "input.nn"), "w") as fh:
        fh.write("# synthetic n2p2 potential for tests\n" + "\n".join(head + lines) + "\n")
    # scaling statistics
    scaling = {}
    if train_frames is not None:
        from ase import Atoms

        allf = [f for e in els for f in funcs[atomic_numbers[e]]]
        per = {z: [] for z in funcs}
        for at in train_frames:
            a = Atoms(at.numbers, positions=at.positions / L, cell=at.cell.array / L, pbc=at.pbc)
            for z, g in zip(a.numbers, brute_force_sf(a, allf, cutoff_type, alpha)):
                per[int(z)].append(g)
        for z in funcs:
            q = np.array(per[z])
            scaling[z] = np.stack([q.min(0), q.max(0), q.mean(0), q.std(0)], 1)
    else:
        for z in funcs:
            lo = rng.uniform(0.0, 0.5, len(funcs[z]))
            hi = lo + rng.uniform(0.5, 3.0, len(funcs[z]))
            scaling[z] = np.stack([lo, hi, 0.5 * (lo + hi), 0.3 * (hi - lo)], 1)
    with open(os.path.join(directory, "scaling.data"), "w") as fh:
        fh.write("#########\n# symmetry function scaling data\n#########\n")
        for k, e in enumerate(els):
            for m, row in enumerate(scaling[atomic_numbers[e]]):
                fh.write(f"{k + 1:4d} {m + 1:4d} " + " ".join(f"{x:24.16E}" for x in row) + "\n")
    layers = {}
    for e in els:
        z = atomic_numbers[e]
        layers[z] = [len(funcs[z])] + hidden[z] + [1]
        with open(os.path.join(directory, f"weights.{z:03d}.data"), "w") as fh:
            fh.write("# weights\n")
            idx = 1
            for lay in range(1, len(layers[z])):
                for j in range(layers[z][lay - 1]):
                    for k in range(layers[z][lay]):
                        fh.write(f"{rng.normal(0, 0.6):24.16E} a {idx:9d} {lay - 1:5d} {j + 1:5d} {lay:5d} {k + 1:5d}\n")
                        idx += 1
                for k in range(layers[z][lay]):
                    fh.write(f"{rng.normal(0, 0.3):24.16E} b {idx:9d} {lay:5d} {k + 1:5d}\n")
                    idx += 1
    return {"elements": [atomic_numbers[e] for e in els], "functions": funcs, "cutoff_type": cutoff_type,
            "alpha": alpha, "scaling": scaling, "scaling_mode": scaling_mode, "smin": smin, "smax": smax,
            "layers": layers, "activations": {z: acts for z in layers}, "normalize_nodes": normalize_nodes,
            "mean_energy": mean_energy, "conv_energy": conv_energy, "atom_energy": ae}
