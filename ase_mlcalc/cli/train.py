"""``ase-mlcalc train FAMILY``, ``ase-mlcalc eval`` and ``ase-mlcalc compare``: one reporting path for every family.

Each family's options carry the Python keyword of its fit as ``dest``
(``--n-sparse`` -> ``n_sparse`` of :func:`~ase_mlcalc.training.fit_gap`), so
the command line and the Python API cannot drift apart.
"""

from __future__ import annotations

import json
import os
import sys
import time

from ..models.bpnn import ACTIVATIONS, FEATURE_TRANSFORMS
from ..models.sparse_gp import DEFAULTS as GAP_DEFAULTS

FITS = {"lj": "fit_lennard_jones", "gap": "fit_gap", "bpnn": "fit_bpnn"}
FAMILY_HELP = {"lj": "Lennard-Jones baseline (epsilon, sigma per species pair, e0)",
               "gap": "GAP-style sparse GP on SOAP (gap_fit's option names; defaults: the mlearn Mo recipe)",
               "bpnn": "Behler-Parrinello networks on ACSF (Adam, then full-batch L-BFGS)"}


def _lj_options(p):
    p.add_argument("--cutoff", type=float, default=5.0, help="cutoff in Å (default 5.0)")
    p.add_argument("--energy-sigma", type=float, default=0.01, help="expected energy error, eV/atom (default 0.01)")
    p.add_argument("--force-sigma", type=float, default=0.1, help="expected force error, eV/Å (default 0.1)")
    p.add_argument("--smooth", action="store_true", help="ASE's smooth cutoff instead of the energy shift")
    p.add_argument("--max-iter", type=int, default=300, help="L-BFGS iterations (default 300)")


def _gap_options(p):
    d = GAP_DEFAULTS
    p.add_argument("--cutoff", type=float, default=d["cutoff"], help=f"SOAP cutoff, Å (default {d['cutoff']})")
    p.add_argument("--cutoff-transition-width", type=float, default=d["cutoff_transition_width"],
                   help=f"width of the cosine switch-off below the cutoff, Å (default {d['cutoff_transition_width']})")
    p.add_argument("--n-max", type=int, default=d["n_max"], help=f"radial basis functions (default {d['n_max']})")
    p.add_argument("--l-max", type=int, default=d["l_max"], help=f"spherical harmonics band limit (default {d['l_max']})")
    p.add_argument("--atom-sigma", type=float, default=d["atom_sigma"], help=f"Gaussian width, Å (default {d['atom_sigma']})")
    p.add_argument("--zeta", type=int, default=d["zeta"], help=f"kernel exponent (default {d['zeta']})")
    p.add_argument("--delta", type=float, default=d["delta"], help=f"kernel energy scale, eV (default {d['delta']})")
    p.add_argument("--n-sparse", type=int, default=d["n_sparse"], help=f"sparse points per species (default {d['n_sparse']})")
    p.add_argument("--sparse-method", choices=["cur", "random"], default="cur", help="sparse point selection (default cur)")
    p.add_argument("--default-sigma", type=float, nargs="+", default=list(d["default_sigma"]), metavar="SIGMA",
                   help="expected errors: energy eV/atom, force eV/Å[, virial eV/atom] "
                   f"(default {' '.join(map(str, d['default_sigma']))})")
    p.add_argument("--gap", help="gap_fit's gap= string, e.g. 'distance_2b cutoff=5 covariance_type=ard_se delta=0.5 "
                   "theta_uniform=1 n_sparse=20 sparse_method=uniform : soap cutoff=5 ...' (replaces the SOAP options)")
    p.add_argument("--config-type-sigma", help="gap_fit's config_type_sigma, e.g. 'surface:0.02:0.1:0.1:0'")
    _e0_options(p)
    p.add_argument("--sparse-jitter", type=float, default=d["sparse_jitter"],
                   help=f"eV^2 added to K_MM's diagonal (default {d['sparse_jitter']})")
    p.add_argument("--no-variance", dest="compute_variance", action="store_false",
                   help="do not store the predictive-variance factors")
    p.add_argument("--seed", type=int, default=0, help="seed of the sparse-point draw")


def _e0_value(text):
    """``--e0``: one number for every element, or ``Symbol:eV`` pairs."""
    try:
        if ":" not in text:
            return float(text)
        return {k: float(v) for k, v in (item.split(":") for item in text.replace(",", " ").split())}
    except ValueError:
        raise ValueError(f"--e0 takes a number or Symbol:eV pairs (e.g. 'In:-0.3 P:-1.9'), got {text!r}") from None


def _e0_options(p):
    p.add_argument("--e0", type=str, help="fixed reference energies, eV: a number or 'Symbol:eV ...'")
    p.add_argument("--e0-method", choices=["auto", "isolated", "average", "least_squares"], default="auto",
                   help="e0 when --e0 is not given (default auto: isolated-atom frames, else least squares)")


def _bpnn_options(p):
    from ..training.bpnn import LBFGS_STEPS

    p.add_argument("--species", nargs="+", help="elements (default: those in the training set)")
    p.add_argument("--cutoff", type=float, default=5.0, help="Å (default 5.0)")
    p.add_argument("--n-radial", type=int, default=16, help="radial G2 functions per element (default 16)")
    p.add_argument("--r-min", type=float, default=1.5, help="Å, first radial centre (default 1.5)")
    p.add_argument("--n-angular-eta", type=int, default=3, help="angular eta values (default 3; 0: radial only)")
    p.add_argument("--zeta", type=float, nargs="+", default=[1.0, 2.0, 4.0, 16.0], help="G4 exponents")
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="hidden widths (default 64 64)")
    p.add_argument("--activation", default="tanh", choices=sorted(ACTIVATIONS))
    p.add_argument("--feature-transform", default="none", choices=FEATURE_TRANSFORMS,
                   help="'log': networks see log(ACSF + 1e-4) (default none)")
    p.add_argument("--core-repulsion", default="zbl", choices=("zbl", "none"),
                   help="ZBL repulsion below the data's shortest distances (default zbl)")
    p.add_argument("--lr-schedule", default="plateau", choices=("plateau", "cosine"))
    p.add_argument("--lbfgs-steps", type=int, default=LBFGS_STEPS,
                   help=f"full-batch L-BFGS iterations after Adam (default {LBFGS_STEPS}; 0: Adam only)")
    p.add_argument("--frame-weights", choices=("balanced",),
                   help="'balanced': weight frames by 1/sqrt(count of their config_type) (default uniform)")
    p.add_argument("--energy-weight", type=float, default=1.0)
    p.add_argument("--force-weight", type=float, default=0.003)
    p.add_argument("--virial-weight", type=float, default=0.04, help="weight of frames' virials per atom (default 0.04)")
    _e0_options(p)
    p.add_argument("--epochs", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-factor", type=float, default=0.5)
    p.add_argument("--lr-patience", type=int, default=50)
    p.add_argument("--min-lr", type=float, default=1e-5)
    p.add_argument("--validation-fraction", type=float, default=0.1)
    p.add_argument("--patience", type=int, default=150, help="early-stopping patience, epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="checkpoint file (written during training)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--device", default="cpu")


OPTIONS = {"lj": _lj_options, "gap": _gap_options, "bpnn": _bpnn_options}


def fit_function(family):
    from .. import training

    return getattr(training, FITS[family])


def add_train(sub):
    train = sub.add_parser("train", help="fit a potential to labelled structures")
    fam = train.add_subparsers(dest="family", required=True)
    for name, add in OPTIONS.items():
        p = fam.add_parser(name, help=FAMILY_HELP[name], description=FAMILY_HELP[name])
        p.add_argument("--train", required=True, help="training structures with energy and forces (any ase.io format)")
        p.add_argument("--test", help="test structures for the error table")
        p.add_argument("-o", "--output", required=True, help="model file to write")
        p.add_argument("--plot", help="parity plot PNG (default: OUTPUT with .png; '' for none)")
        p.add_argument("--threads", type=int, help="CPU threads of torch and numba (default: their own)")
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
        before = {a.dest for a in p._actions}
        add(p)
        p.set_defaults(func=_train, fit_options=sorted({a.dest for a in p._actions} - before))


def fit_kwargs(args):
    """The fit's keyword arguments from parsed ``train FAMILY`` options."""
    kw = {k: getattr(args, k) for k in args.fit_options}
    kw["progress"] = args.progress
    if kw.get("e0") is not None:
        kw["e0"] = _e0_value(kw["e0"])
    if kw.get("core_repulsion") == "none":
        kw["core_repulsion"] = None
    for key in ("zeta", "hidden"):
        if isinstance(kw.get(key), list):
            kw[key] = tuple(kw[key])
    return kw


def set_threads(threads):
    if threads:
        from .._openmp import set_threads as set_pools

        set_pools(threads)


def _plot_path(args, default_base):
    if args.plot is not None:
        return args.plot or None
    return os.path.splitext(default_base)[0] + ".png"


def _train(args):
    from ..training import read_frames, report

    set_threads(args.threads)
    train = read_frames(args.train)
    test = read_frames(args.test) if args.test else None
    calc = fit_function(args.family)(train, test, **fit_kwargs(args))
    info = calc.model.fit_info
    summary = {k: v for k, v in info.items() if k != "history"}
    calc.save(args.output, metadata={"trained_on": os.path.basename(os.fspath(args.train)), "fit": summary,
                                     "metrics": calc.metrics})
    print(describe_fit(calc))
    report(calc, {"train": train, "test": test}, plot=_plot_path(args, args.output), title=args.family)
    print(f"model written to {args.output}")
    return calc


def describe_fit(calc):
    """One or two lines on what a fit did (family-specific numbers from ``fit_info``)."""
    info, model = calc.model.fit_info, calc.model
    if model.family == "lennard_jones":
        return (f"Lennard-Jones fitted in {info['wall_time_s']:.1f} s ({info['iterations']} L-BFGS iterations)\n"
                f"epsilon (eV):\n{calc.epsilon}\nsigma (Å):\n{calc.sigma}\ne0 (eV): {model.e0.numpy()}")
    if model.family == "gap":
        return (f"fitted {info['n_sparse']} sparse points to {info['n_observations']} observations "
                f"in {info['time_total_s']:.1f} s (descriptors {info['time_descriptors_s']:.1f} s, "
                f"kernel rows {info['time_kernel_rows_s']:.1f} s, solve {info['time_solve_s']:.1f} s)")
    if model.family == "bpnn":
        return (f"{info['epochs_run']} Adam epochs + {info['lbfgs_iterations']} L-BFGS iterations in "
                f"{info['wall_time_s']:.0f} s")
    return f"fitted in {info.get('wall_time_s', float('nan')):.1f} s"


# --------------------------------------------------------------------------- eval

def add_eval(sub):
    p = sub.add_parser("eval", help="error table of a saved model on labelled structure files")
    p.add_argument("model", help="model file written by 'ase-mlcalc train' or calc.save()")
    p.add_argument("files", nargs="+", help="structure files with reference energy/forces (any ase.io format)")
    p.add_argument("--index", default=":", help="ase.io index of frames to read (default ':')")
    p.add_argument("--plot", default="", help="write a parity plot (PNG) to this path (default: none)")
    p.add_argument("--by", metavar="KEY", help="also a table per group of frames (atoms.info[KEY], e.g. config_type)")
    p.set_defaults(func=_eval)


def _eval(args):
    from ..io import load_model
    from ..training import read_frames, report

    model = load_model(args.model)
    report(model, {path: read_frames(path, args.index) for path in args.files}, plot=args.plot or None,
           title=os.path.basename(args.model), by_group=args.by)


# --------------------------------------------------------------------------- compare

def add_compare(sub):
    p = sub.add_parser("compare", help="fit LJ, GAP and BPNN on the same data and tabulate their test errors, "
                                       "fit time, peak memory and speed (as Zuo et al. 2020)")
    p.add_argument("--train", required=True, help="training structures (any ase.io format)")
    p.add_argument("--test", required=True, help="test structures")
    p.add_argument("--families", nargs="+", choices=list(FITS), default=list(FITS), help="default: lj gap bpnn")
    p.add_argument("--options", help="JSON file {family: {fit keyword: value}} (default: each fit's defaults)")
    p.add_argument("-o", "--output-dir", default=".", help="where the models are written (FAMILY.pt)")
    p.add_argument("--plot", default=None, help="combined parity plot PNG (default OUTPUT_DIR/compare.png; '' none)")
    p.add_argument("--threads", type=int, default=1, help="threads of each fit and of the timing (default 1)")
    p.set_defaults(func=_compare)


def _fit_in_this_process(family, train, test, options_json, output, threads):
    """Child side of ``compare``: one fit, its model file, and a JSON line of its outcome on stdout."""
    from ..training import read_frames

    set_threads(threads)
    options = json.loads(options_json)
    options.setdefault("progress", False)
    t = time.perf_counter()
    calc = fit_function(family)(read_frames(train), read_frames(test), **options)
    wall = time.perf_counter() - t
    calc.save(output)
    print(json.dumps({"wall_time_s": wall, "metrics": calc.metrics}))


def _compare(args):
    import subprocess

    from ..io import load
    from ..training import evaluate, parity_plot, read_frames
    from ..training.metrics import energy_forces_time

    options = {}
    if args.options:
        with open(args.options) as fh:
            options = json.load(fh)
        unknown = sorted(set(options) - set(FITS))
        if unknown:
            raise ValueError(f"{args.options}: unknown families {unknown} (known: {', '.join(FITS)})")
    os.makedirs(args.output_dir, exist_ok=True)
    test = read_frames(args.test)
    if not test:
        raise ValueError(f"no frames in {args.test}")
    rows, preds = [], {}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), NUMBA_NUM_THREADS=str(args.threads))
    for family in args.families:
        out = os.path.join(args.output_dir, f"{family}.pt")
        code = ("import sys; from ase_mlcalc.cli.train import _fit_in_this_process as f; "
                "f(*sys.argv[1:6], int(sys.argv[6]))")
        proc = subprocess.Popen([sys.executable, "-c", code, family, os.fspath(args.train), os.fspath(args.test),
                                 json.dumps(options.get(family, {})), out, str(args.threads)],
                                stdout=subprocess.PIPE, env=env, text=True)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"the {family} fit failed (exit status {proc.returncode}); run "
                               f"'ase-mlcalc train {family}' for its message")
        result = json.loads(stdout.strip().splitlines()[-1])
        calc = load(out)
        m, preds[family] = evaluate(calc, test)
        largest = max(test, key=len)
        rows.append({"family": family, **m, "fit_s": result["wall_time_s"],
                     "peak_mb": usage.ru_maxrss / 1024.0, "us_per_atom": energy_forces_time(calc, largest)})
    print(format_compare_table(rows))
    plot = args.plot if args.plot is not None else os.path.join(args.output_dir, "compare.png")
    if plot:
        parity_plot(preds, plot, title=f"test set {os.path.basename(args.test)}")
        print(f"parity plot written to {plot}")
    return rows


def format_compare_table(rows):
    """The ``compare`` table: test errors, fit wall time, peak memory (RSS) and energy+forces time per atom."""
    head = (f"{'model':<8}{'E RMSE':>10}{'E MAE':>10}{'F RMSE':>10}{'F MAE':>10}{'fit':>10}{'peak':>10}"
            f"{'E+F':>10}")
    units = f"{'':<8}{'meV/at':>10}{'meV/at':>10}{'eV/Å':>10}{'eV/Å':>10}{'s':>10}{'MB':>10}{'µs/atom':>10}"
    lines = [head, units]
    for r in rows:
        lines.append(f"{r['family']:<8}{r['energy_rmse']:>10.3f}{r['energy_mae']:>10.3f}"
                     f"{r.get('force_rmse', float('nan')):>10.4f}{r.get('force_mae', float('nan')):>10.4f}"
                     f"{r['fit_s']:>10.1f}{r['peak_mb']:>10.0f}{r['us_per_atom']:>10.1f}")
    return "\n".join(lines)
