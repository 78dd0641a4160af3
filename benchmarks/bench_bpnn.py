"""Speed of the BPNN calculator: energy+forces per atom and MD throughput.

    PYTHONPATH=. python benchmarks/bench_bpnn.py [--model MODEL.pt] [--threads 1] [--repeats 7]

For 128- and 2000-atom bcc Mo cells (rattled) it prints the median wall time
of one energy+forces evaluation (µs/atom) on the CPU and, when available,
CUDA; then velocity-Verlet MD throughput (atom-steps/s, neighbor-list skin
0.5 Å). Without ``--model`` a BPNN with the default ACSF (40 features) and
[64, 64] tanh networks and random weights is timed (speed does not depend on
the weights).

If ``torchani`` (2.9 API) imports, two reference models are timed in the
same run, calculator to calculator (torchani's own ASE calculator,
``ANI.ase()``, which takes forces by autograd of its energy) on the same
cells, and the ratio torchani median / BPNN median (of the default BPNN, or
of ``--model``) is printed per cell size and device:

* ``ANI-40``: an ANI model of the default BPNN's size, built with torchani's
  ``Assembler`` and random weights: element Mo (Z = 42; torchani accepts any
  element once self energies are given, zeros here), AEV of 40 features
  (``ANIRadial``: 16 shifted Gaussians, cutoff 5 Å; ``ANIAngular``: 3 radial
  shifts x 8 angle sections = 24, cutoff 5 Å like the ACSF G4 terms, where
  ANI models use 3.5 Å), cosine cutoff function, one ``ANINetworks`` network
  40-64-64-1 with tanh and biases, float64, periodic cell with torchani's
  ``VerletCellList`` (skin 0.5 Å, the skin of the BPNN neighbor-list cache).
* ``ANI-1x``: the pretrained ANI-1x ensemble (8 networks, AEV of 384
  features, CELU) with the same neighbor list, float64, on a random C/H/N/O
  cell at the same bcc Mo positions (not chemically meaningful, fine for
  timing). torchani downloads its weights on first use (huggingface, then
  GitHub); if that fails (e.g. no network) a line says so and it is skipped.
  Placing ``ani1x_state_dict.pt`` in torchani's state-dict directory
  (``$TORCHANI_DATA_DIR/StateDicts``, default ``~/.local/share/Torchani/StateDicts``)
  avoids the download.

torchani's C++/CUDA extensions (cuAEV, compiled cell list) are not needed:
the pure-PyTorch AEV (``strategy="pyaev"``) is used on every device.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import numpy as np
import torch
from ase import units
from ase.build import bulk
from ase.calculators.calculator import all_changes
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

import ase_mlcalc
from ase_mlcalc.models.bpnn import BPNN, BPNNModel


def cell(n_atoms, seed=0):
    reps = {128: (4, 4, 4), 2000: (10, 10, 10)}[n_atoms]
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True) * reps
    atoms.rattle(0.05, seed=seed)
    return atoms


def chno_cell(n_atoms, seed=0):
    """``cell(n_atoms)`` with random H/C/N/O (for ANI-1x): not chemistry, only for timing."""
    atoms = cell(n_atoms, seed)
    atoms.numbers[:] = np.random.default_rng(seed).choice([1, 6, 7, 8], size=n_atoms)
    return atoms


ANI_SKIN = 0.5  # Å, Verlet skin of torchani's neighbor list (= the BPNN calculator's default skin)


def ani_matched(cutoff=5.0, r_min=1.5, n_radial=16, n_angular_shifts=3, n_sections=8, hidden=(64, 64)):
    """torchani 2.9 ANI model of the default BPNN's size, random weights, float64.

    AEV for one element (Mo): ``n_radial`` radial + ``n_angular_shifts * n_sections``
    angular features (16 + 24 = 40 by default), both with ``cutoff`` and a
    cosine cutoff function; shifts on a linear grid from ``r_min`` with
    Gaussian width ``eta = 1 / (2 dr^2)`` (as the default ACSF). One network
    40-64-64-1 with tanh and biases, as the BPNN (ANI-1x uses CELU; torchani
    takes any ``torch.nn.Module`` as activation).
    """
    import torchani
    from torchani.aev import ANIAngular, ANIRadial
    from torchani.arch import Assembler
    from torchani.neighbors import VerletCellList
    from torchani.nn import ANINetworks

    torch.manual_seed(0)
    dr, dra = (cutoff - r_min) / n_radial, (cutoff - r_min) / n_angular_shifts  # cover_linearly excludes cutoff
    asm = Assembler(neighborlist=VerletCellList(skin=ANI_SKIN))
    asm.set_symbols(["Mo"])
    asm.set_global_cutoff_fn("cosine")
    asm.set_aev_computer(
        radial=ANIRadial.cover_linearly(start=r_min, cutoff=cutoff, eta=0.5 / dr ** 2, num_shifts=n_radial),
        angular=ANIAngular.cover_linearly(start=r_min, cutoff=cutoff, eta=0.5 / dra ** 2, zeta=32.0,
                                          num_shifts=n_angular_shifts, num_sections=n_sections),
        strategy="pyaev")
    asm.set_atomic_networks(cls=ANINetworks, ctor="build", kwargs={
        "dims": {}, "default_dims": tuple(hidden), "activation": torch.nn.Tanh(), "bias": True})
    asm.set_zeros_as_self_energies()
    model = asm.assemble(ensemble_size=1)
    assert isinstance(model, torchani.arch.ANI)
    model.requires_grad_(False)
    return model.double()


def load_ani1x(torchani, timeout=20.0):
    """(pretrained ANI-1x in float64 on the CPU, None), or (None, why) if its weights cannot be had."""
    import socket

    from torchani.neighbors import VerletCellList

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # the GitHub fallback (torch.hub) has no timeout of its own
    try:
        model = torchani.models.ANI1x(neighborlist=VerletCellList(skin=ANI_SKIN), strategy="pyaev",
                                      dtype=torch.float64)
    except Exception as e:  # no network, blocked host, corrupt file: any failure means skip
        return None, f"{type(e).__name__}: {e}"
    finally:
        socket.setdefaulttimeout(old)
    return model, None


def time_calc(calc, atoms, repeats):
    atoms = atoms.copy()
    atoms.calc = calc
    times = []
    for k in range(repeats + 1):
        atoms.positions[0, 0] += 1e-4  # force a recalculation (neighbor list reused within the skin)
        t = time.perf_counter()
        calc.calculate(atoms, ["energy", "forces"], all_changes)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])  # first call: warm-up (numba / CUDA init)


def md_rate(calc, atoms, steps):
    atoms = atoms.copy()
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, 2.0 * units.fs)
    dyn.run(2)
    t = time.perf_counter()
    dyn.run(steps)
    return len(atoms) * steps / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="trained BPNN model file (default: random weights, default architecture)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--md-steps", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')}")
    if args.model:
        model = ase_mlcalc.load_model(args.model)
    else:
        torch.manual_seed(0)
        model = BPNNModel(["Mo"], 5.0)
    print(f"model: {model.descriptor}, hidden {model.hidden}, {model.activation}")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    ours = {}  # (device, n_atoms) -> BPNN energy+forces median (s)
    for dev in devices:
        calc = BPNN(model if dev == "cpu" else copy.deepcopy(model), device=dev)  # a calculator owns its model
        for n in (128, 2000):
            t = ours[dev, n] = time_calc(calc, cell(n), args.repeats)
            rate = md_rate(calc, cell(n), args.md_steps if n == 128 else max(3, args.md_steps // 4))
            print(f"BPNN {dev:4s} {n:5d} atoms: energy+forces median {t * 1e3:8.2f} ms "
                  f"= {t / n * 1e6:7.2f} µs/atom; MD {rate:9.0f} atom-steps/s")
    os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")  # cuAEV / cell-list extensions not built
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")  # short timeouts for the ANI-1x weight download
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        import torchani
    except ImportError:
        print("torchani not importable: ANI comparison skipped")
        return
    print(f"torchani {torchani.__version__}: its ASE calculator (ANI.ase(), forces by autograd), "
          f"VerletCellList(skin={ANI_SKIN}), pyaev AEV, float64")
    ani40 = ani_matched()
    aev, net = ani40.aev_computer, ani40.neural_networks["Mo"]
    dims = [layer.in_features for layer in net.layers] + [net.final_layer.in_features, net.final_layer.out_features]
    print(f"ANI-40: Mo (Z=42), AEV {aev.out_dim} features = radial {aev.radial_len} (cutoff {aev.radial.cutoff} Å) "
          f"+ angular {aev.angular_len} (cutoff {aev.angular.cutoff} Å), network {dims} {net.activation}, random weights")
    ani1x, why = load_ani1x(torchani)
    if ani1x is None:
        print(f"ANI-1x skipped: its weights could not be loaded ({why})")
    else:
        print("ANI-1x: pretrained, 8 networks, AEV 384 features; random H/C/N/O at the bcc Mo positions")
    for dev in devices:
        models = [("ANI-40", ani40.to(dev), cell)]
        if ani1x is not None:
            models.append(("ANI-1x", ani1x.to(dev), chno_cell))
        for name, ani, make_cell in models:
            for n in (128, 2000):
                ani.neighborlist.reset_cached_values()  # the Verlet cache holds the previous cell's atoms
                t = time_calc(ani.ase(), make_cell(n), args.repeats)
                print(f"{name} {dev:4s} {n:5d} atoms: energy+forces median {t * 1e3:8.2f} ms = "
                      f"{t / n * 1e6:7.2f} µs/atom; ratio {name} / BPNN = {t / ours[dev, n]:.2f}")


if __name__ == "__main__":
    main()
