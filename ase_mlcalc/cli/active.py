"""``ase-mlcalc learn STRUCTURE --reference NAME[:JSON]`` (on-the-fly learning) and ``ase-mlcalc calibrate``."""

from __future__ import annotations

import json
import os


def reference_calculator(spec):
    """An ASE calculator from ``NAME`` or ``NAME:{"json": "keywords"}``, by ASE's own calculator registry
    (:func:`ase.calculators.calculator.get_calculator_class`: emt, lj, vasp, gpaw, ...).

    Raises ValueError naming an unknown calculator or malformed keywords.
    """
    from ase.calculators.calculator import get_calculator_class

    name, _, kwargs = spec.partition(":")
    try:
        cls = get_calculator_class(name.strip().lower())
    except (ImportError, KeyError, ValueError, AttributeError) as err:
        raise ValueError(f"ASE has no calculator {name!r} ({type(err).__name__}: {err})") from None
    try:
        kw = json.loads(kwargs) if kwargs.strip() else {}
    except json.JSONDecodeError as err:
        raise ValueError(f"--reference keywords must be JSON, e.g. 'vasp:{{\"xc\": \"PBE\"}}': {err}") from None
    if not isinstance(kw, dict):
        raise ValueError("--reference keywords must be a JSON object")
    return cls(**kw)


def add_learn(sub):
    p = sub.add_parser("learn", help="on-the-fly learning: MD that calls a reference calculator where the model "
                                     "is uncertain, and learns from it")
    p.add_argument("structure", help="starting structure (any file ase.io reads)")
    p.add_argument("--reference", required=True,
                   help="ASE calculator by name, with optional JSON keywords: 'emt', 'vasp:{\"xc\": \"PBE\"}'")
    p.add_argument("--model", default="gap", help="gap (default), bpnn (a committee), or a model file to continue")
    p.add_argument("--index", default="-1", help="frame of the structure file (default -1)")
    p.add_argument("--repeat", type=int, nargs=3, metavar=("N1", "N2", "N3"), help="supercell of the structure")
    p.add_argument("--ensemble", choices=["langevin", "nve"], default="langevin")
    p.add_argument("-T", "--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--timestep", type=float, default=1.0, help="fs (default 1)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--threshold", type=float, help="eV/atom (default: --threshold-factor x the noise level)")
    p.add_argument("--threshold-factor", type=float, help="default 2.5 (GAP), 4 (committee)")
    p.add_argument("--check-every", type=int, default=1)
    p.add_argument("--max-new-sparse", type=int, default=10, help="sparse points a call may add (GAP)")
    p.add_argument("--data", default=None, help="extxyz file of the labelled frames (default STRUCTURE_otf.extxyz)")
    p.add_argument("--resume", action="store_true", help="continue from --data (rebuilds the model from it)")
    p.add_argument("--fit-options", help="JSON of the initial fit's keywords (fit_gap / fit_bpnn)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="model file to write")
    p.add_argument("--log", default=None, help="log of the reference calls (default STRUCTURE_otf.log)")
    p.add_argument("--plot", default=None, help="PNG (default STRUCTURE_otf.png; '' for none)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=_learn)


def _learn(args):
    import ase.io

    from ..active import OnTheFly, plot_on_the_fly

    base = os.path.splitext(os.path.basename(args.structure))[0] + "_otf"
    data = args.data or base + ".extxyz"
    reference = reference_calculator(args.reference)
    options = dict(threshold=args.threshold, threshold_factor=args.threshold_factor, check_every=args.check_every,
                   max_new_sparse_per_call=args.max_new_sparse, seed=args.seed, progress=args.progress)
    if args.fit_options:
        options["fit_options"] = json.loads(args.fit_options)
    if args.resume:
        otf, atoms = OnTheFly.resume(data, reference, model=args.model, **options)
        start = int(atoms.info.get("otf_step", 0))
        print(f"resumed from {data}: {len(otf.frames)} frames, {otf.n_calls} calls, step {start}")
    else:
        atoms = ase.io.read(args.structure, index=args.index)
        if args.repeat:
            atoms = atoms.repeat(args.repeat)
        otf = OnTheFly(args.model, reference, initial_frames=[atoms.copy()], data=data, **options)
        start = 0
    result = otf.run(atoms, args.ensemble, temperature_K=args.temperature, timestep_fs=args.timestep,
                     steps=args.steps, log=args.log or base + ".log", start_step=start)
    print(result.summary())
    otf.calculator.save(args.output)
    print(f"{len(otf.frames)} labelled frames in {data}; model written to {args.output}")
    plot = args.plot if args.plot is not None else base + ".png"
    if plot:
        plot_on_the_fly(result, plot, title=f"on-the-fly learning, {os.path.basename(args.structure)}")
        print(f"plot written to {plot}")


def add_calibrate(sub):
    p = sub.add_parser("calibrate", help="predicted uncertainty against actual errors on held-out frames")
    p.add_argument("model", help="model file with uncertainties (GAP, committee)")
    p.add_argument("files", nargs="+", help="labelled structure files (held out from the training)")
    p.add_argument("--set-scale", metavar="OUTPUT", help="store the fitted scale in the model and write it here")
    p.add_argument("--plot", default="", help="calibration plot PNG (default none)")
    p.set_defaults(func=_calibrate)


def _calibrate(args):
    from ..active import calibrate
    from ..io import load
    from ..training import read_frames

    calc = load(args.model)
    frames = [a for path in args.files for a in read_frames(path)]
    report = calibrate(calc, frames, set_scale=bool(args.set_scale))
    print(report.summary())
    if args.set_scale:
        calc.save(args.set_scale)
        print(f"calibrated model written to {args.set_scale}")
    if args.plot:
        report.plot(args.plot, title=os.path.basename(args.model))
        print(f"plot written to {args.plot}")
