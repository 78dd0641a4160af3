"""Path-integral MD of bcc Mo with i-PI, the beads computed in parallel by several ase_mlcalc client processes.

i-PI (``pip install ipi``) runs the ring-polymer dynamics and sends each bead's positions over a socket;
ASE's ``SocketClient`` turns any ASE calculator -- here ase_mlcalc's GAP -- into an i-PI client. With
``--clients 2`` two client processes connect to the same unix socket and i-PI hands the beads to
whichever client is free: replica (bead) parallelism without MPI.

::

    python examples/ipi/pimd_mo.py                       # small GAP fit (~10 s), 4 beads, 2 clients, 200 steps
    python examples/ipi/pimd_mo.py --model mo_gap.pt --beads 8 --clients 4 --steps 2000 --temperature 100

Prints i-PI's conserved quantity (the ring-polymer Hamiltonian in NVE) and its drift, the temperature
and the quantum kinetic energy (centroid-virial estimator), and how many force calls each client made;
``--json FILE`` writes the same as JSON. i-PI's own output (``pimd.out``, ``pimd.pos_*``) is left in
``--workdir``.

The script is also its own client: ``pimd_mo.py client --model M --address A --structure S --count C``
serves one connection until i-PI ends the run (you may start clients like that on other machines with
``mode='inet'`` sockets instead of unix ones).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "Mo_train.extxyz.xz"

INPUT = """<simulation verbosity='low' safe_stride='100000'>
  <output prefix='pimd'>
    <properties stride='1' filename='out' flush='1'> [ step, time{{picosecond}}, conserved{{electronvolt}},
      temperature{{kelvin}}, kinetic_cv{{electronvolt}}, potential{{electronvolt}} ] </properties>
  </output>
  <total_steps> {steps} </total_steps>
  <prng><seed> {seed} </seed></prng>
  <ffsocket name='mlcalc' mode='unix'>
    <address> {address} </address>
    <latency> 1e-4 </latency>
    <timeout> 600 </timeout>
  </ffsocket>
  <system>
    <initialize nbeads='{beads}'>
      <file mode='ase'> {structure} </file>
      <velocities mode='thermal' units='kelvin'> {temperature} </velocities>
    </initialize>
    <forces><force forcefield='mlcalc'/></forces>
    <ensemble><temperature units='kelvin'> {temperature} </temperature></ensemble>
    <motion mode='dynamics'>
      <dynamics mode='nve'>
        <timestep units='femtosecond'> {timestep} </timestep>
      </dynamics>
    </motion>
  </system>
</simulation>
"""


def small_gap(path):
    """Fit a small Mo GAP on 20 frames of the shipped mlearn data (a few seconds) and save it to ``path``."""
    import ase.io

    from ase_mlcalc.training import fit_gap

    frames = ase.io.read(DATA, ":20")
    fit_gap(frames, n_sparse=100, n_max=6, l_max=4, progress=False).save(path)
    return path


def client(model, address, structure, count=None):
    """Serve i-PI through the unix socket ``/tmp/ipi_<address>`` with ase_mlcalc's calculator until i-PI says EXIT.

    ``count``: file to which the number of force evaluations is written at the end.
    """
    import ase.io
    from ase.calculators.socketio import SocketClient

    import ase_mlcalc

    atoms = ase.io.read(structure)
    atoms.calc = ase_mlcalc.load(model)
    calls = 0
    real = atoms.calc.calculate

    def counting(*args, **kwargs):
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    atoms.calc.calculate = counting
    for _ in range(600):  # i-PI creates the socket a moment after it starts
        if os.path.exists(f"/tmp/ipi_{address}"):
            break
        time.sleep(0.1)
    sock = SocketClient(unixsocket=address, timeout=600)
    try:
        sock.run(atoms)
    finally:
        sock.close()
        if count:
            Path(count).write_text(str(calls))


def read_out(path):
    """Columns of i-PI's properties file: dict name -> numpy array."""
    import numpy as np

    names, rows = [], []
    for line in Path(path).read_text().splitlines():
        if line.startswith("#"):
            if "-->" in line:
                names.append(line.split("-->")[1].split()[0].split("{")[0])
        elif line.strip():
            rows.append([float(x) for x in line.split()])
    data = np.array(rows)
    return {n: data[:, k] for k, n in enumerate(names)}


def run_pimd(workdir, model, beads=4, clients=2, steps=200, temperature=300.0, timestep=1.0, repeat=2, seed=31415,
             timeout=900):
    """Run i-PI (``nbeads=beads``, NVE ring polymer) with ``clients`` client processes; returns a summary dict.

    Parameters
    ----------
    workdir : directory for i-PI's input and output (created)
    model : ase_mlcalc model file (Mo)
    repeat : bcc Mo cubic cell repeated ``repeat`` times per axis (2: 16 atoms)
    temperature : K (initial thermal velocities); timestep : fs

    Returns
    -------
    dict: steps, natoms, conserved (eV, per step), drift (eV/atom, max |H(t) - H(0)| / N), drift_per_ps
    (eV/atom/ps, slope of a line fit), temperature (K, mean), kinetic_cv (eV, mean), calls (per client)

    Raises
    ------
    RuntimeError : i-PI or a client failed (their output is in the message)
    """
    import ase.io
    import numpy as np
    from ase.build import bulk

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(repeat)
    atoms.rattle(0.02, seed=1)
    structure = workdir / "mo.extxyz"
    ase.io.write(structure, atoms)
    address = f"mlcalc_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    (workdir / "input.xml").write_text(INPUT.format(steps=steps, seed=seed, address=address, beads=beads,
                                                    structure=structure.name, temperature=temperature,
                                                    timestep=timestep))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("NUMBA_NUM_THREADS", "1")
    for f in workdir.glob("pimd.*"):
        f.unlink()
    server = subprocess.Popen([sys.executable, _ipi_script(), "input.xml"], cwd=workdir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs = [subprocess.Popen([sys.executable, __file__, "client", "--model", str(Path(model).resolve()),
                               "--address", address, "--structure", str(structure),
                               "--count", str(workdir / f"calls_{k}.txt")],
                              cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for k in range(clients)]
    try:
        out, _ = server.communicate(timeout=timeout)
        outs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in [server, *procs]:
            if p.poll() is None:
                p.kill()
        sock = Path(f"/tmp/ipi_{address}")
        if sock.exists():
            sock.unlink()
    if server.returncode != 0:
        raise RuntimeError(f"i-PI failed (status {server.returncode}):\n{out[-3000:]}")
    for k, (p, o) in enumerate(zip(procs, outs)):
        if p.returncode != 0:
            raise RuntimeError(f"client {k} failed (status {p.returncode}):\n{o[-3000:]}")
    props = read_out(workdir / "pimd.out")
    n = len(atoms)
    h = props["conserved"]
    t_ps = props["time"]
    return {
        "steps": int(props["step"][-1]),
        "natoms": n,
        "beads": beads,
        "clients": clients,
        "conserved": h.tolist(),
        "drift": float(np.abs(h - h[0]).max() / n),
        "drift_per_ps": float(np.polyfit(t_ps, h / n, 1)[0]) if len(h) > 2 else 0.0,
        "potential_fluctuation": float(np.ptp(props["potential"]) / n),
        "temperature": float(props["temperature"].mean()),
        "kinetic_cv": float(props["kinetic_cv"].mean()),
        "calls": [int((workdir / f"calls_{k}.txt").read_text()) for k in range(clients)],
    }


def _ipi_script():
    """The ``i-pi`` script of this environment (next to this interpreter, else on PATH)."""
    import shutil

    cand = Path(sys.executable).parent / "i-pi"
    found = str(cand) if cand.exists() else shutil.which("i-pi")
    if not found:
        raise RuntimeError("i-PI is not installed: pip install ipi")
    return found


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd")
    c = sub.add_parser("client", help="serve one i-PI connection with an ase_mlcalc model")
    c.add_argument("--model", required=True)
    c.add_argument("--address", required=True, help="unix socket name: /tmp/ipi_ADDRESS")
    c.add_argument("--structure", required=True, help="a structure file with the atoms i-PI simulates")
    c.add_argument("--count", default=None, help="file to write the number of force calls to")
    p.add_argument("--model", default=None, help="Mo model file (default: fit a small GAP into --workdir)")
    p.add_argument("--workdir", default="ipi_pimd_mo")
    p.add_argument("--beads", type=int, default=4)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--temperature", type=float, default=300.0, help="K")
    p.add_argument("--timestep", type=float, default=1.0, help="fs")
    p.add_argument("--repeat", type=int, default=2, help="bcc Mo cubic cell repeated N times per axis")
    p.add_argument("--json", default=None, help="write the summary here")
    a = p.parse_args(argv)
    if a.cmd == "client":
        client(a.model, a.address, a.structure, a.count)
        return
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    model = a.model or small_gap(work / "mo_gap_small.pt")
    t0 = time.perf_counter()
    res = run_pimd(work, model, beads=a.beads, clients=a.clients, steps=a.steps, temperature=a.temperature,
                   timestep=a.timestep, repeat=a.repeat)
    res["wall_s"] = time.perf_counter() - t0
    print(f"PIMD bcc Mo: {res['natoms']} atoms x {res['beads']} beads, {res['steps']} NVE steps of {a.timestep} fs, "
          f"{res['clients']} clients ({'+'.join(map(str, res['calls']))} force calls), {res['wall_s']:.1f} s")
    print(f"conserved quantity: max |H(t) - H(0)| = {res['drift'] * 1e3:.3f} meV/atom, "
          f"drift {res['drift_per_ps'] * 1e3:.3f} meV/atom/ps "
          f"(potential energy fluctuates by {res['potential_fluctuation'] * 1e3:.1f} meV/atom)")
    print(f"mean temperature {res['temperature']:.0f} K, quantum kinetic energy (centroid virial) "
          f"{res['kinetic_cv']:.4f} eV")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
