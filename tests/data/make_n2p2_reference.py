"""Writes ``n2p2_mlearn_reference.json``: n2p2's own predictions (its ``nnp-predict`` program) for
a few mlearn test frames with the published Mo and Li potentials of ``examples/data/nnp/``, which
``tests/test_n2p2.py`` compares with ase_mlcalc's.

Not run by the tests. It needs n2p2 builds (https://github.com/CompPhysVienna/n2p2; ``make libnnp
nnp-predict``), not part of ase_mlcalc. The stored numbers came from master 61daa0df (2024-11-25)
and release v2.3.0 (e51667ab), each built with ``PROJECT_CFLAGS="-O2 -std=c++11"``:

    python tests/data/make_n2p2_reference.py --master /path/to/master/bin/nnp-predict \\
        --v230 /path/to/v2.3.0/bin/nnp-predict

For each frame: ``input.data`` is written in Bohr (``ase.units.Bohr``) at full precision, in a
scratch folder with the potential's files, and ``nnp-predict 1`` run there; its energy
(energy.out, Hartree) and forces (nnforces.out, Hartree/Bohr) are converted with
``ase.units.Hartree`` and ``ase.units.Bohr``. master prints 17 significant digits, v2.3.0 9.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile

import ase.io
import numpy as np
from ase import units

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FRAMES = {"Mo": [0, 3, 17, 15], "Li": [0, 4, 25]}  # vacancy, AIMD, (elastic), surface slab with self-images
N_FORCE_ATOMS = 16  # forces stored for the first 16 atoms (all atoms of a frame with self-images)


def self_images(atoms, rc):
    """Whether an atom sees a periodic image of itself within rc (Å)."""
    import itertools

    c = atoms.cell.array
    return any(np.linalg.norm(np.array(n) @ c) < rc for n in itertools.product(range(-3, 4), repeat=3) if any(n))


def write_input_data(path, atoms):
    L = units.Bohr
    with open(path, "w") as fh:
        fh.write("begin\ncomment ase_mlcalc reference\n")
        for v in atoms.cell.array / L:
            fh.write("lattice {:.17e} {:.17e} {:.17e}\n".format(*v))
        for p, s in zip(atoms.positions / L, atoms.get_chemical_symbols()):
            fh.write("atom {:.17e} {:.17e} {:.17e} {} 0.0 0.0 0.0 0.0 0.0\n".format(*p, s))
        fh.write("energy 0.0\ncharge 0.0\nend\n")


def columns(path, names):
    """Named columns of an n2p2 output table (the last comment line with plain names is the header)."""
    header, rows = None, []
    with open(path) as fh:
        lines = fh.readlines()
    for line in lines:
        if line.startswith("#"):
            tok = line[1:].split()
            if tok and all(re.fullmatch(r"[A-Za-z_]\w*", t) for t in tok) and "Col" not in tok:
                header = tok
        elif line.strip():
            rows.append([float(x) for x in line.split()])
    return np.array(rows)[:, [header.index(n) for n in names]]


def nnp_predict(binary, potential, atoms):
    with tempfile.TemporaryDirectory() as wd:
        for f in os.listdir(potential):
            shutil.copy(os.path.join(potential, f), wd)
        write_input_data(os.path.join(wd, "input.data"), atoms)
        subprocess.run([binary, "1"], cwd=wd, check=True, capture_output=True, timeout=600)
        e = columns(os.path.join(wd, "energy.out"), ["Ennp"])[0, 0] * units.Hartree
        f = columns(os.path.join(wd, "nnforces.out"), ["fx", "fy", "fz"]) * units.Hartree / units.Bohr
    return e, f


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--master", required=True, help="nnp-predict of n2p2 master 61daa0df")
    ap.add_argument("--v230", required=True, help="nnp-predict of n2p2 v2.3.0")
    ap.add_argument("-o", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "n2p2_mlearn_reference.json"))
    args = ap.parse_args()
    out = {"about": "n2p2 nnp-predict on mlearn test frames (eV, eV/Å); written by make_n2p2_reference.py",
           "n2p2": {"master": "61daa0df (2024-11-25)", "v2.3.0": "e51667ab"}, "units": "ase.units Bohr, Hartree"}
    for el, idx in FRAMES.items():
        potential = os.path.join(ROOT, "examples", "data", "nnp", el)
        frames = ase.io.read(os.path.join(ROOT, "examples", "data", f"{el}_test.extxyz.xz"), ":")
        rows = []
        for k in idx:
            a = frames[k]
            self_im = self_images(a, 5.2)
            n = len(a) if self_im else N_FORCE_ATOMS
            row = {"frame": k, "n_atoms": len(a), "self_images": self_im, "force_atoms": n}
            for name, binary in (("master", args.master), ("v2.3.0", args.v230)):
                e, f = nnp_predict(os.path.abspath(binary), potential, a)
                row[name] = {"energy": float(e), "forces": f[:n].tolist()}
            rows.append(row)
            print(el, k, row["master"]["energy"], row["v2.3.0"]["energy"], flush=True)
        out[el] = rows
    with open(args.o, "w") as fh:
        json.dump(out, fh, indent=None, separators=(",", ":"))
        fh.write("\n")


if __name__ == "__main__":
    main()
