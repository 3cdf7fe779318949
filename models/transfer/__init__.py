"""Moving a source diffusion model to a target cohort: `fit_transfer` and the baselines' building blocks."""
from ecg_tgdp.models.transfer.fit import TRAINED_METHODS, TRANSFER_METHODS, TransferResult, WindowSplits, fit_transfer

__all__ = ["TRAINED_METHODS", "TRANSFER_METHODS", "TransferResult", "WindowSplits", "fit_transfer"]
