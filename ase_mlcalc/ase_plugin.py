"""ASE plugin entry point (group ``ase.plugins``): lists our calculators in ASE >= 3.29.

Importing :mod:`ase_mlcalc` directly does not need this module.
"""

try:  # ASE 3.29 keeps the plugin machinery under ase._4; older ASE has none.
    from ase._4.plugins.plugin import CalculatorPlugin
except ImportError:  # pragma: no cover - depends on the ASE version
    try:
        from ase.plugins.plugin import CalculatorPlugin
    except ImportError:
        CalculatorPlugin = None

_CALCULATORS = {
    "ase_mlcalc.LennardJones": "ase_mlcalc.models.lennard_jones.LennardJones",
    "ase_mlcalc.GAP": "ase_mlcalc.models.sparse_gp.GAP",
    "ase_mlcalc.BPNN": "ase_mlcalc.models.bpnn.BPNN",
}

__ase_plugins__ = set()
if CalculatorPlugin is not None:
    import ase_mlcalc as _package

    __ase_plugins__ = {
        CalculatorPlugin(name, implementation=impl, module=_package,
                         citation="ase_mlcalc: machine-learned interatomic potentials for ASE")
        for name, impl in _CALCULATORS.items()
    }
