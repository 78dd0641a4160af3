"""Helper of tests/test_lammps.py: run LAMMPS input scripts through the ``lammps`` Python module with
``pair_style mlcalc`` loaded (:func:`ase_mlcalc.lammps.lammps_with_plugin`).

    mpiexec -n N python tests/lammps_driver.py jobs.json OUTDIR

``jobs.json`` is a list of {"name": str, "script": str}. Each job runs in a fresh LAMMPS instance; the
scripts write their own numbers (dump / print ... file). Rank 0 writes OUTDIR/results.json:
{name: {"ok": bool, "error": str or null, "seconds": float}} plus "_constants" (nktv2p, ftm2v of
units metal) and "_nprocs". The plugin comes from the cache named by $ASE_MLCALC_CACHE.
"""

import json
import os
import sys
import time

from ase_mlcalc.lammps import lammps_with_plugin


def main(jobs_file, outdir):
    with open(jobs_file) as fh:
        jobs = json.load(fh)
    results = {}
    me = 0
    for job in jobs:
        name = job["name"]
        lmp = lammps_with_plugin(cmdargs=["-nocite", "-log", os.path.join(outdir, f"{name}.log"), "-screen", "none"],
                                 build=False)
        me = lmp.extract_setting("world_rank")
        t0 = time.perf_counter()
        try:
            lmp.commands_string(job["script"])
            results[name] = {"ok": True, "error": None}
        except Exception as err:  # noqa: BLE001 -- LAMMPS errors arrive as plain Exception with the ERROR text
            results[name] = {"ok": False, "error": str(err)}
        results[name]["seconds"] = time.perf_counter() - t0
        if "_constants" not in results:
            results["_constants"] = {k: lmp.extract_global(k) for k in ("nktv2p", "ftm2v")}
        results["_nprocs"] = lmp.extract_setting("world_size")
        lmp.close()
    if me == 0:
        with open(os.path.join(outdir, "results.json"), "w") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
