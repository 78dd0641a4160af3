"""Regenerate the tiny gap_fit models of this directory (needs quippy-ase's gap_fit on the PATH).

    python tests/data/quip/make_models.py [--keep-data DIR]

Training sets (written to a temporary directory, not shipped):

* ``mo_small.extxyz``: frames 0, 30, 60, 120 of ``examples/data/Mo_train.extxyz.xz`` (mlearn Mo, Zuo et al.,
  J. Phys. Chem. A 124, 731 (2020), BSD-3): 53-54 atoms, energies and forces.
* ``cuau_small.extxyz``: 8 strained, rattled 32-atom fcc Cu/Au cells and isolated Cu and Au atoms, labelled
  with ASE's EMT (energy, forces, stress; config_type bulk/hot/IsolatedAtom), numpy seed 42.

gap_fit labels its files with the time of the fit (``GAP_<date>_<time>``), so a new run gives other
labels (and sparse-point file names) but the same numbers.
"""
import argparse
import glob
import os
import shutil
import subprocess
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))

#: name -> gap_fit arguments (atoms_filename and gap_file are added)
MODELS = {
    # SOAP only, Mo; gap_fit's default sparse_separate_file=T: the sparse points in mo_soap.xml.sparseX.<label>
    "mo_soap": ("mo_small.extxyz", (
                "gap={soap cutoff=4.5 cutoff_transition_width=0.5 n_max=3 l_max=3 atom_sigma=0.5 "
                "covariance_type=dot_product zeta=4 delta=1.0 n_sparse=20 sparse_method=cur_points} "
                "default_sigma={0.005 0.05 0.05 0.0} e0_method=average force_parameter_name=forces "
                "sparse_jitter=1e-8 do_copy_at_file=F rnd_seed=1")),
    # distance_2b + SOAP, Cu/Au, add_species: 3 pair coordinates and 2 SOAP coordinates (d = 64 > 50: sliced), inline
    "cuau_2b_soap": ("cuau_small.extxyz", (
                     "gap={distance_2b cutoff=5.0 cutoff_transition_width=1.0 covariance_type=ard_se delta=0.5 "
                     "theta_uniform=1.0 n_sparse=8 sparse_method=uniform add_species=T : soap cutoff=4.5 "
                     "cutoff_transition_width=0.5 n_max=3 l_max=2 atom_sigma=0.5 covariance_type=dot_product zeta=4 "
                     "delta=0.2 n_sparse=8 sparse_method=cur_points add_species=T} "
                     "default_sigma={0.002 0.02 0.02 0.0} config_type_sigma={hot:0.004:0.04:0.04:0.0} "
                     "e0_method=isolated force_parameter_name=forces sparse_jitter=1e-8 sparse_separate_file=F "
                     "do_copy_at_file=F rnd_seed=2")),
    # SOAP options: one coordinate for every centre (Z=0, add_species=F), central_weight, central_reference_all_species,
    # covariance_sigma0 and a non-integer zeta, inline
    "cuau_soap_options": ("cuau_small.extxyz", (
                          "gap={soap cutoff=4.0 cutoff_transition_width=0.8 n_max=2 l_max=2 atom_sigma=0.6 "
                          "central_weight=0.5 central_reference_all_species=T covariance_sigma0=0.2 n_species=2 "
                          "species_Z={{29 79}} add_species=F covariance_type=dot_product zeta=2.5 delta=0.3 "
                          "n_sparse=12 sparse_method=cur_points} default_sigma={0.002 0.02 0.02 0.0} "
                          "e0_method=average force_parameter_name=forces sparse_jitter=1e-8 sparse_separate_file=F "
                          "do_copy_at_file=F rnd_seed=3")),
    # real gap_fit files of what the reader refuses: a soap_turbo descriptor, and a GAP on a core (LJ) potential
    "refused_soap_turbo": ("cuau_small.extxyz", (
                           "gap={soap_turbo l_max=2 alpha_max={{2 2}} atom_sigma_r={{0.5 0.5}} atom_sigma_t={{0.5 0.5}} "
                           "atom_sigma_r_scaling={{0.0 0.0}} atom_sigma_t_scaling={{0.0 0.0}} "
                           "amplitude_scaling={{1.0 1.0}} rcut_hard=4.5 rcut_soft=4.0 basis=poly3gauss "
                           "scaling_mode=polynomial radial_enhancement=1 compress_mode=trivial "
                           "central_weight={{1.0 1.0}} n_species=2 species_Z={{29 79}} central_index=1 add_species=F "
                           "covariance_type=dot_product zeta=4 delta=0.2 n_sparse=4 sparse_method=cur_points} "
                           "default_sigma={0.002 0.02 0.02 0.0} e0_method=isolated force_parameter_name=forces "
                           "sparse_separate_file=F do_copy_at_file=F rnd_seed=3")),
    "refused_lj_core": ("cuau_small.extxyz", (
                        "gap={distance_2b cutoff=5.0 covariance_type=ard_se delta=0.5 theta_uniform=1.0 n_sparse=4 "
                        "sparse_method=uniform add_species=F} core_param_file=lj_core.xml core_ip_args={IP LJ} "
                        "default_sigma={0.002 0.02 0.02 0.0} e0_method=isolated force_parameter_name=forces "
                        "sparse_separate_file=F do_copy_at_file=F rnd_seed=3")),
}

#: QUIP's LJ parameters for the core potential of refused_lj_core (written as lj_core.xml next to the data)
LJ_CORE = """<LJ_params n_types="2" label="default">
<per_type_data type="1" atomic_num="29" />
<per_type_data type="2" atomic_num="79" />
<per_pair_data type1="1" type2="1" sigma="2.0" eps6="0.01" eps12="0.01" cutoff="5.0" energy_shift="T" linear_force_shift="F" />
<per_pair_data type1="2" type2="2" sigma="2.2" eps6="0.01" eps12="0.01" cutoff="5.0" energy_shift="T" linear_force_shift="F" />
<per_pair_data type1="1" type2="2" sigma="2.1" eps6="0.01" eps12="0.01" cutoff="5.0" energy_shift="T" linear_force_shift="F" />
</LJ_params>
"""


def training_sets(directory):
    from ase import Atoms
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read, write

    mo = read(os.path.join(ROOT, "examples", "data", "Mo_train.extxyz.xz"), ":")
    write(os.path.join(directory, "mo_small.extxyz"), [mo[i] for i in (0, 30, 60, 120)], format="extxyz")
    rng = np.random.default_rng(42)
    frames = []
    for k in range(8):
        a = bulk("Cu", "fcc", a=3.75, cubic=True).repeat((2, 2, 2))
        a.numbers[rng.choice(len(a), rng.integers(6, 26), replace=False)] = 79
        eps = rng.normal(scale=0.02, size=(3, 3))
        a.set_cell(a.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        a.rattle(0.08, seed=int(rng.integers(1 << 30)))
        a.calc = EMT()
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        a.info["config_type"] = "bulk" if k < 6 else "hot"
        frames.append(a)
    for sym in ("Cu", "Au"):
        a = Atoms(sym, positions=[[0, 0, 0]], cell=[20, 20, 20], pbc=True)
        a.calc = EMT()
        a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=np.zeros((1, 3)))
        a.info["config_type"] = "IsolatedAtom"
        frames.append(a)
    write(os.path.join(directory, "cuau_small.extxyz"), frames, format="extxyz")
    with open(os.path.join(directory, "lj_core.xml"), "w") as f:
        f.write(LJ_CORE)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep-data", help="also write the training sets here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as work:
        training_sets(work)
        if args.keep_data:
            os.makedirs(args.keep_data, exist_ok=True)
            for f in glob.glob(os.path.join(work, "*.extxyz")):
                shutil.copy(f, args.keep_data)
        for name, (data, options) in MODELS.items():
            for old in glob.glob(os.path.join(HERE, f"{name}.xml*")):
                os.remove(old)
            cmd = f"gap_fit atoms_filename={data} {options} gap_file={name}.xml"
            print(cmd)
            subprocess.run(cmd, shell=True, check=True, cwd=work, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
            for f in glob.glob(os.path.join(work, f"{name}.xml*")):
                shutil.copy(f, HERE)


if __name__ == "__main__":
    main()
