"""Downstream utility, fidelity and privacy statistics, plots and the report."""
