"""Analysis that uses the ensemble: adversarial probes, bias figures, canaries, calibration
fitting, and the labelled samples and preference pairs they read. Above the ensemble; what the
ensemble itself applies at scoring time lives in `farm.screening`."""

__all__: list[str] = []
