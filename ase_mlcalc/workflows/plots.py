"""PNG plots of the workflow results (matplotlib, Agg backend): MD time series, E(V), phonon bands and DOS."""

from __future__ import annotations

from ..plotting import pyplot, save_figure


def plot_md(result, path, title=None):
    """PNG of an MD run: energies per atom (top) and temperature (bottom) against time in ps."""
    plt = pyplot()
    t = result.time_fs / 1000.0
    n = result.n_atoms
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax1.plot(t, result.potential_energy / n, label="potential")
    ax1.plot(t, result.total_energy / n, label="total")
    ax1.set_ylabel("energy (eV/atom)")
    ax1.legend()
    if result.ensemble == "nve":
        ax1.set_title(f"NVE: drift {result.energy_drift() * 1e3:+.3g} meV/atom/ps")
    ax2.plot(t, result.temperature, color="C3")
    if result.ensemble == "langevin":
        ax2.axhline(result.temperature_K, color="k", ls="--", lw=0.8, label="target")
        ax2.legend()
    ax2.set_xlabel("time (ps)")
    ax2.set_ylabel("temperature (K)")
    save_figure(fig, path, title)


def plot_eos(result, path, title=None):
    """PNG of an EOS: computed energies per atom (points) and the fitted curve against volume per atom."""
    plt = pyplot()
    n = result.n_atoms
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot(result.curve_volumes / n, result.curve_energies / n, "-", label=f"{result.eos} fit")
    ax.plot(result.volumes / n, result.energies / n, "o", label="calculated")
    ax.axvline(result.v0 / n, color="k", ls=":", lw=0.8)
    text = f"V0 = {result.v0 / n:.3f} Å³/atom\nB = {result.bulk_modulus:.1f} GPa"
    if result.lattice_constant is not None:
        text += f"\na0 = {result.lattice_constant:.4f} Å"
    ax.text(0.5, 0.95, text, transform=ax.transAxes, ha="center", va="top")
    ax.set_xlabel("volume (Å³/atom)")
    ax.set_ylabel("energy (eV/atom)")
    ax.legend(loc="lower right")
    save_figure(fig, path, title)


def plot_phonons(result, path, title=None):
    """PNG of phonon bands along the path (left) and the DOS (right), frequencies in ``result.unit``."""
    plt = pyplot()
    fig, (ax, axd) = plt.subplots(1, 2, figsize=(9, 4.5), sharey=True, gridspec_kw={"width_ratios": [3, 1]})
    ax.plot(result.x, result.bands, color="C0", lw=1)
    for xx in result.X:
        ax.axvline(xx, color="k", lw=0.5)
    ax.axhline(0, color="k", lw=0.5, ls=":")
    ax.set_xticks(result.X)
    ax.set_xticklabels([lab.replace("G", "Γ") for lab in result.labels])
    ax.set_xlim(result.x[0], result.x[-1])
    ax.set_ylabel(f"frequency ({result.unit})")
    axd.plot(result.dos, result.dos_frequencies, color="C1")
    axd.fill_betweenx(result.dos_frequencies, 0, result.dos, color="C1", alpha=0.3)
    axd.set_xlabel(f"DOS (states/{result.unit})")
    axd.set_xlim(left=0)
    save_figure(fig, path, title)
