"""Active learning: on-the-fly learning during MD (:class:`OnTheFly`) and calibration of predicted
uncertainties against held-out errors (:func:`calibrate`)."""

from .calibration import CalibrationReport, calibrate  # noqa: F401
from .otf import OnTheFly, OnTheFlyError, OnTheFlyResult, plot_on_the_fly  # noqa: F401
