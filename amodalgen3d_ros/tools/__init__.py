"""Tools apart from the runtime path: the data engine, training, calibration, metrics and benchmarks."""
