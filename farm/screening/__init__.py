"""Runtime screening, applied by the ensemble to every score: the injection detector, the
defences against a fooled judge, length correction and calibration maps. Below the ensemble;
the tools that measure judges through the ensemble live in `farm.analysis`."""

__all__: list[str] = []
