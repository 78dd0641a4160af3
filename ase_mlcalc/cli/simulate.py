"""``ase-mlcalc md | relax | eos | elastic | phonons STRUCTURE MODEL``: the workflows of :mod:`ase_mlcalc.workflows`.

STRUCTURE is any file ase.io reads, MODEL a model file of any family (read
with :func:`ase_mlcalc.load`). Results are printed; plots (PNG) are named
after the structure file in the current directory unless told otherwise
(``--plot PATH``; ``--plot ''`` for none).
"""

from __future__ import annotations


def _add_structure_model(p, what):
    p.add_argument("structure", help=f"{what} (any file ase.io reads)")
    p.add_argument("model", help="model file of any family (written by 'ase-mlcalc train' or calc.save())")
    p.add_argument("--index", default="-1",
                   help="which frame of the structure file (ase.io index; default -1, the last)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")


def _add_plot(p, suffix):
    p.add_argument("--plot", default=None,
                   help=f"PNG to write (default: STRUCTURE's name with _{suffix}.png, in the current directory; "
                        "'' for none)")


def _write_plot(args, suffix, plot_fn, result):
    """Draw ``result`` with ``plot_fn`` to --plot, or STRUCTURE_SUFFIX.png by default ('' for none)."""
    import os

    path = args.plot if args.plot is not None else (
        os.path.splitext(os.path.basename(args.structure))[0] + f"_{suffix}.png")
    if path:
        plot_fn(result, path, title=f"{os.path.basename(args.structure)} / {os.path.basename(args.model)}")
        print(f"plot written to {path}")


def _read_structure_and_calc(args):
    import ase.io

    from ase.io.formats import UnknownFileTypeError

    from ..io import load

    try:
        atoms = ase.io.read(args.structure, index=args.index)
    except UnknownFileTypeError as err:
        raise ValueError(f"cannot read {args.structure}: {err}") from None
    if isinstance(atoms, list):
        raise ValueError(f"--index {args.index!r} selects {len(atoms)} frames; give a single frame")
    return atoms, load(args.model, device=args.device)


def _maybe_relax_first(args, atoms, calc):
    """Relax positions and cell (fmax args.relax_fmax) before elastic/phonon calculations, unless --no-relax."""
    from ..workflows import relax

    if args.no_relax:
        return
    res = relax(atoms, calc, fmax=args.relax_fmax, cell=True)
    print(f"relaxed first (positions and cell, fmax {args.relax_fmax} eV/Å): {res.n_steps} steps, "
          f"{'converged' if res.converged else 'NOT converged'}, "
          + (f"a0 = {res.lattice_constant:.5f} Å, " if res.lattice_constant else "")
          + f"{res.volume / len(atoms):.4f} Å^3/atom, max stress {abs(res.stress).max():.2e} GPa")


def _add_relax_first(p):
    p.add_argument("--no-relax", action="store_true",
                   help="use the structure as given (default: relax positions and cell first)")
    p.add_argument("--relax-fmax", type=float, default=1e-4,
                   help="force tolerance of that relaxation, eV/Å (default 1e-4)")


def add_md(sub):
    p = sub.add_parser("md", help="molecular dynamics (NVE velocity Verlet or NVT Langevin) with ASE")
    _add_structure_model(p, "starting structure")
    p.add_argument("--ensemble", choices=["nve", "langevin"], default="nve")
    p.add_argument("-T", "--temperature", type=float, default=300.0,
                   help="K: initial Maxwell-Boltzmann velocities, Langevin target (default 300)")
    p.add_argument("--timestep", type=float, default=1.0, help="fs (default 1)")
    p.add_argument("--steps", type=int, default=1000, help="MD steps (default 1000)")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs (default 0.01)")
    p.add_argument("--repeat", type=int, nargs=3, metavar=("N1", "N2", "N3"),
                   help="run on this supercell of the structure")
    p.add_argument("--interval", type=int, default=10,
                   help="sample, log and write the trajectory every this many steps")
    p.add_argument("--trajectory", default=None,
                   help="ASE trajectory file (default: STRUCTURE's name with _md.traj; '' for none)")
    p.add_argument("--log", default=None, help="MDLogger log file (default: none; '-' for stdout)")
    p.add_argument("--seed", type=int, default=None, help="random seed (velocities, Langevin noise)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_plot(p, "md")
    p.set_defaults(func=_md)


def _md(args):
    import os

    from ..workflows import plot_md, run_md

    atoms, calc = _read_structure_and_calc(args)
    if args.repeat:
        atoms = atoms.repeat(args.repeat)
    traj = args.trajectory
    if traj is None:
        traj = os.path.splitext(os.path.basename(args.structure))[0] + "_md.traj"
    res = run_md(atoms, calc, ensemble=args.ensemble, temperature_K=args.temperature, timestep_fs=args.timestep,
                 steps=args.steps, friction_per_fs=args.friction, interval=args.interval, trajectory=traj or None,
                 logfile=args.log, progress=not args.no_progress, seed=args.seed)
    print(res.summary())
    if traj:
        print(f"trajectory written to {traj}")
    _write_plot(args, "md", plot_md, res)


def add_relax(sub):
    p = sub.add_parser("relax", help="relax positions and cell (FrechetCellFilter) and write the relaxed structure")
    _add_structure_model(p, "structure to relax")
    p.add_argument("--fmax", type=float, default=0.01, help="force tolerance, eV/Å (default 0.01)")
    p.add_argument("--no-cell", action="store_true", help="relax positions only, keep the cell")
    p.add_argument("--hydrostatic", action="store_true", help="relax the volume only, keep the cell shape")
    p.add_argument("--pressure", type=float, default=0.0, help="external pressure, GPa (default 0)")
    p.add_argument("--optimizer", default="BFGS", help="BFGS (default), FIRE, LBFGS, BFGSLineSearch, MDMin")
    p.add_argument("--steps", type=int, default=1000, help="maximum optimizer steps")
    p.add_argument("--trajectory", default=None, help="optimizer trajectory file (default none)")
    p.add_argument("-o", "--output", default=None,
                   help="relaxed structure file "
                        "(default: STRUCTURE's name with _relaxed.extxyz, in the current directory)")
    p.add_argument("-q", "--quiet", action="store_true", help="no optimizer log")
    p.set_defaults(func=_relax)


def _relax(args):
    import os

    import ase.io

    from ..workflows import relax

    atoms, calc = _read_structure_and_calc(args)
    res = relax(atoms, calc, fmax=args.fmax, cell=not args.no_cell, optimizer=args.optimizer, steps=args.steps,
                pressure_GPa=args.pressure, hydrostatic=args.hydrostatic, trajectory=args.trajectory,
                logfile=None if args.quiet else "-")
    print(res.summary())
    out = args.output or os.path.splitext(os.path.basename(args.structure))[0] + "_relaxed.extxyz"
    ase.io.write(out, atoms)
    print(f"relaxed structure written to {out}")


def add_eos(sub):
    p = sub.add_parser("eos", help="equation of state E(V): V0, E0, bulk modulus, lattice constant")
    _add_structure_model(p, "crystal structure (relaxed or close to it)")
    p.add_argument("--strain", type=float, default=0.03,
                   help="largest linear strain of the isotropic scaling (default 0.03)")
    p.add_argument("--points", type=int, default=11, help="number of volumes (default 11)")
    p.add_argument("--eos", default="birchmurnaghan", help="ASE EOS name (default birchmurnaghan)")
    p.add_argument("--relax-positions", action="store_true", help="relax internal positions at every volume")
    _add_plot(p, "eos")
    p.set_defaults(func=_eos)


def _eos(args):
    from ..workflows import equation_of_state, plot_eos

    atoms, calc = _read_structure_and_calc(args)
    res = equation_of_state(atoms, calc, max_strain=args.strain, n_points=args.points, eos=args.eos,
                            relax_positions=args.relax_positions)
    print(res.summary())
    _write_plot(args, "eos", plot_eos, res)


def add_elastic(sub):
    p = sub.add_parser("elastic", help="elastic constants C_ij from stress-strain finite differences")
    _add_structure_model(p, "crystal structure")
    p.add_argument("--strain", type=float, default=1e-3,
                   help="strain amplitude of the ± central differences (default 1e-3)")
    p.add_argument("--relax-ions", choices=["auto", "yes", "no"], default="auto",
                   help="relax internal positions under each strain (default auto: when forces appear)")
    _add_relax_first(p)
    p.set_defaults(func=_elastic)


def _elastic(args):
    from ..workflows import elastic_constants

    atoms, calc = _read_structure_and_calc(args)
    _maybe_relax_first(args, atoms, calc)
    relax_ions = {"auto": "auto", "yes": True, "no": False}[args.relax_ions]
    res = elastic_constants(atoms, calc, strain=args.strain, relax_positions=relax_ions)
    print(res.summary())


def add_phonons(sub):
    p = sub.add_parser("phonons", help="phonon band structure and DOS (finite displacements, ase.phonons)")
    _add_structure_model(p, "primitive cell of the crystal")
    p.add_argument("--supercell", type=int, nargs=3, metavar=("N1", "N2", "N3"),
                   help="supercell for the force constants (default: heights >= 2 x model cutoff)")
    p.add_argument("--delta", type=float, default=0.01, help="displacement, Å (default 0.01)")
    p.add_argument("--path", default=None, help="special-point path, e.g. GHNGPH (default: ASE's standard path)")
    p.add_argument("--npoints", type=int, default=200, help="q-points along the path (default 200)")
    p.add_argument("--dos-kpts", type=int, nargs=3, default=[20, 20, 20], metavar=("K1", "K2", "K3"),
                   help="q-mesh of the DOS (default 20 20 20)")
    p.add_argument("--unit", choices=["THz", "meV", "cm-1"], default="THz", help="frequency unit (default THz)")
    p.add_argument("--no-asr", action="store_true", help="do not impose the acoustic sum rule (raw force constants)")
    _add_relax_first(p)
    _add_plot(p, "phonons")
    p.set_defaults(func=_phonons)


def _phonons(args):
    from ..workflows import phonons, plot_phonons

    atoms, calc = _read_structure_and_calc(args)
    _maybe_relax_first(args, atoms, calc)
    res = phonons(atoms, calc, supercell=args.supercell, delta=args.delta, path=args.path, npoints=args.npoints,
                  dos_kpts=tuple(args.dos_kpts), unit=args.unit, acoustic_sum_rule=not args.no_asr)
    print(res.summary())
    _write_plot(args, "phonons", plot_phonons, res)


COMMANDS = (add_md, add_relax, add_eos, add_elastic, add_phonons)
