"""The shipped recipes (`*.toml` here, package data of the wheel): `ecg-tgdp run quickstart` finds them by name."""
