"""What users do with a trained potential: MD, relaxation, equation of state, elastic constants, phonons.

One module per workflow (a function and its result dataclass): :mod:`.md`,
:mod:`.relax`, :mod:`.eos`, :mod:`.elastic`, :mod:`.phonons`; their plots in
:mod:`.plots`.

Each function takes an :class:`ase.Atoms` and an ASE calculator, or the path
of a saved model file of any family (read with :func:`ase_mlcalc.load`), or
``None`` to use the calculator already attached to the atoms. The physics is
ASE's own machinery (:mod:`ase.md`, :mod:`ase.optimize` with
:class:`ase.filters.FrechetCellFilter`, :mod:`ase.eos`, :mod:`ase.phonons`);
this module adds defaults, checks, result objects in stated units and plots.

Units: energies eV, lengths Å, volumes Å³, time fs, temperature K, stress and
elastic moduli GPa (converted with :data:`ase.units.GPa`), phonon frequencies
in THz unless asked otherwise ("THz", "meV" or "cm-1").

:func:`run_md` and :func:`relax` change the given atoms in place (as ASE's
dynamics do); :func:`equation_of_state`, :func:`elastic_constants` and
:func:`phonons` work on copies and leave the input untouched.
"""

from .common import get_calculator
from .elastic import ElasticResult, elastic_constants, strain_matrix
from .eos import EOSResult, equation_of_state
from .md import MDResult, make_dynamics, run_md
from .phonons import FREQUENCY_UNITS, PhononResult, phonons
from .plots import plot_eos, plot_md, plot_phonons
from .relax import RelaxResult, relax

__all__ = [
    "run_md", "make_dynamics", "MDResult", "relax", "RelaxResult", "equation_of_state", "EOSResult", "elastic_constants",
    "ElasticResult", "strain_matrix", "phonons", "PhononResult", "plot_md", "plot_eos", "plot_phonons", "get_calculator",
    "FREQUENCY_UNITS",
]
