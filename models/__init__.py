"""Diffusion denoisers, schedules, samplers, training, classifiers and TGDP transfer."""
