"""Exceptions raised by ase_mlcalc. All derive from ValueError so that code
catching ValueError (as ASE's own does for bad input) keeps working."""


class UnknownElementError(ValueError):
    """A structure contains an element the model or descriptor was not built for."""


class InvalidStructureError(ValueError):
    """NaN/infinite or overlapping positions, or a zero-volume periodic cell."""


class ModelFileError(ValueError):
    """A model file is corrupt, of an unknown format version, or of an unknown family."""


class TrainingDataError(ValueError):
    """Training frames lack energies or forces, or hold unusable structures."""
