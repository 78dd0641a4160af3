/* ase_mlcalc: pair_style mlcalc -- runs an ase_mlcalc model (Python/torch) inside LAMMPS.
 *
 *   pair_style mlcalc model.pt [threads N]
 *   pair_coeff * * El1 El2 ...     (one element symbol or NULL per LAMMPS atom type)
 *
 * Each MPI rank builds the edges (i local, j local or ghost, r_ij = x_j - x_i, |r_ij| < model
 * cutoff) from a full neighbor list, the Python model returns g_ij = dE/dr_ij, and the forces
 * f_i += g_ij, f_j -= g_ij go to local and ghost atoms; reverse communication (newton on)
 * brings the ghost forces home.
 */
#ifndef ASE_MLCALC_PAIR_MLCALC_H
#define ASE_MLCALC_PAIR_MLCALC_H

#include "pair.h"

#include <cstdint>
#include <string>
#include <vector>

namespace LAMMPS_NS {

class PairMLCalc : public Pair {
 public:
  PairMLCalc(class LAMMPS *);
  ~PairMLCalc() override;

  void compute(int eflag, int vflag) override;
  void settings(int narg, char **arg) override;
  void coeff(int narg, char **arg) override;
  void init_style() override;
  double init_one(int i, int j) override;

 private:
  void *bridge;          // PyObject *: the ase_mlcalc.lammps.bridge.MLCalcLammps instance
  double cutoff;         // model cutoff, Angstrom
  std::string model_file;
  int nthreads;          // 0: default (one per MPI rank)
  std::vector<int> type_species;  // [1..ntypes]: species index into model.species, -1 = NULL

  // per-step work arrays (kept to avoid reallocation)
  std::vector<int> compact;           // LAMMPS index -> graph index or -1 (size nall)
  std::vector<int> atom_of;           // graph index -> LAMMPS index
  std::vector<int64_t> species;       // graph index -> species index
  std::vector<int64_t> centers, neighbors;  // graph indices of each edge
  std::vector<int> jlocal;            // LAMMPS index of each edge's neighbour
  std::vector<size_t> edge_start;     // edges of centre k: edge_start[k] .. edge_start[k+1]-1
  std::vector<double> rij, gij;       // (E, 3) edge vectors and dE/dr_ij
  std::vector<double> eatom_graph;    // per-atom energies of graph-local atoms

  void allocate();
  void release_bridge();
  // collective: stop LAMMPS with msg if local_ok is false on any rank
  void check_all_ranks(bool local_ok, const std::string &msg);
};

}    // namespace LAMMPS_NS

#endif
