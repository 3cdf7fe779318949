"""The `ecg-tgdp` command line: config models, run directory, and thin stage functions."""
