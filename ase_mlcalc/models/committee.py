"""A committee of models (e.g. BPNNs from different seeds and data): their mean, and their spread as the uncertainty.

Committee (query-by-committee) uncertainty as in ANI's active learning (Smith et al., J. Chem. Phys.
148, 241733 (2018)) and in Behler-Parrinello practice (Artrith & Behler, PRB 85, 045439 (2012)): the
prediction is the mean of the K members, the uncertainty their sample standard deviation (ddof=1):

    E = mean_k E_k,  energies_uncertainty_i = std_k eps_i^(k),  energy_uncertainty = std_k E_k,
    forces_uncertainty_i = sqrt(mean_c var_k F_ic^(k))  (eV/Å, per atom and component, comparable
                                                         to a force-component RMSE),

each multiplied by ``uncertainty_scale`` (1 unless calibrated on held-out data,
:func:`ase_mlcalc.active.calibrate`). The result names are the GAP's where the meaning is the same.
"""

from __future__ import annotations

import torch

from ..calculator import MLCalculator
from ..graph import forces_and_virial
from .base import AtomisticModel, get_family, register_family


class CommitteeModel(AtomisticModel):
    """The mean of ``members`` (AtomisticModels of the same species, any family) and their spread.

    Parameters
    ----------
    members : sequence of at least two models, same species in the same order

    Outputs: ``energies_uncertainty`` (n_atoms,) eV, ``energy_uncertainty`` (float) eV,
    ``forces_uncertainty`` (n_atoms,) eV/Å (K extra backward passes). Buffer ``uncertainty_scale`` ().
    """

    outputs = {"energies_uncertainty": "(n_atoms,) eV, committee std of each atomic energy",
               "energy_uncertainty": "float, eV, committee std of the total energy",
               "forces_uncertainty": "(n_atoms,) eV/Å, committee std of each atom's force components (RMS over x, y, z)"}
    options = {"uncertainty": (False, "compute the committee uncertainties at every call")}

    def __init__(self, members):
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"a committee needs at least two members, got {len(members)}")
        species = members[0].species
        if any(tuple(m.species) != tuple(species) for m in members):
            raise ValueError("committee members must know the same species in the same order")
        super().__init__(species, max(m.cutoff for m in members))
        self.members = torch.nn.ModuleList(members)
        self.full_list = any(m.full_list for m in members)
        self.register_buffer("uncertainty_scale", torch.ones((), dtype=torch.float64))
        with torch.no_grad():
            self.e0.copy_(torch.stack([m.e0 for m in members]).mean(0))

    @property
    def dtypes(self):  # the members' (a BPNN's depend on its loaded statistics)
        return tuple(d for d in self.members[0].dtypes if all(d in m.dtypes for m in self.members))

    def hyperparameters(self):
        return {"species": list(self.species),
                "members": [{"family": m.family, "hyperparameters": m.hyperparameters()} for m in self.members]}

    @classmethod
    def from_hyperparameters(cls, hp):
        return cls([get_family(m["family"])[0].from_hyperparameters(m["hyperparameters"]) for m in hp["members"]])

    def outputs_for_options(self, options):
        return tuple(self.outputs) if options.get("uncertainty") else ()

    def member_energies(self, graph):
        """(K, n_centers) atomic energies of every member, e0 included."""
        return torch.stack([m(graph) for m in self.members])

    def forward(self, graph):
        return self.member_energies(graph).mean(0)

    def atomic_energies(self, graph):  # the mean, without the (mean) e0
        return self.forward(graph) - self.e0.to(graph.dtype)[graph.center_species]

    def energies_and_outputs(self, graph, outputs=()):
        self.check_outputs(outputs)
        per = [m(graph) for m in self.members]  # kept apart: a force pass per member reaches only that member
        eps = torch.stack(per)
        mean = eps.mean(0)
        if not outputs:
            return mean, {}
        scale = float(self.uncertainty_scale)
        extra = {"energies_uncertainty": (eps.detach().std(0) * scale).cpu().double().numpy(),
                 "energy_uncertainty": float(eps.detach().sum(1).std() * scale)}
        if "forces_uncertainty" in outputs and graph.edge_vectors.requires_grad:
            forces = []
            for k in range(len(self.members)):
                f, _, _ = forces_and_virial(graph, per[k].sum(), create_graph=False, retain_graph=True)
                forces.append(f.detach())
            forces = torch.stack(forces)
            extra["forces_uncertainty"] = (forces.var(0).mean(1).sqrt() * scale).cpu().double().numpy()
        return mean, extra


class Committee(MLCalculator):
    """Calculator of a :class:`CommitteeModel` (e.g. ``fit_bpnn(..., committee=K)``): the members' mean;
    with ``uncertainty=True`` (or ``get_property``) their spread, see the module docstring."""

    def __init__(self, model, device="cpu", **kwargs):
        super().__init__(model=model, device=device, **kwargs)

    def check_model(self, model):
        if not isinstance(model, CommitteeModel):
            raise TypeError(f"Committee needs a CommitteeModel, got {type(model).__name__}")


register_family("committee", CommitteeModel, Committee)
