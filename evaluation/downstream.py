"""The downstream classifier the utility protocol trains per arm and seed: the project's, or the user's own.

`evaluation.classifier` (or `ecg-tgdp evaluate --classifier`) names it:

- "ecg-tgdp" (the default): `models.classifier.ECGClassifier` on `evaluation.classifier_inputs`,
  class-balanced batches, early stopped on the validation windows' macro-F1;
- "package.module:callable": a factory the protocol calls once per arm and seed with the keyword
  arguments it accepts among `leads`, `samples`, `num_classes` and `fs_hz`. It returns either
  - a scikit-learn estimator (`fit`, `predict_proba`), trained on the windows normalized with the
    target cohort's statistics and flattened to [N, leads · T]; its `random_state`, when it has one,
    is set to the seed (e.g. "sklearn.ensemble:HistGradientBoostingClassifier"); or
  - a `torch.nn.Module` mapping normalized windows [B, leads, T] to logits [B, num_classes], trained
    by the project's loop (the same batches, augmentation and early stopping as the built-in one).

Every arm, seed and interval of the protocol is then computed with that classifier.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from ecg_tgdp.evaluation.classifier_inputs import PreparedInputs, WindowGeometry
from ecg_tgdp.models.classifier import ClassifierInputs, ClassifierTraining, classifier_for, predict, train_classifier

BUILTIN = "ecg-tgdp"
FACTORY_ARGUMENTS = ("leads", "samples", "num_classes", "fs_hz")
Predictor = Callable[[ClassifierInputs], np.ndarray]  # prepared inputs -> probabilities [N, num_classes]


class DownstreamClassifier:
    """The project's classifier; subclasses replace how windows are prepared and how a model is fitted."""

    name = BUILTIN

    def __init__(self, geometry: WindowGeometry, num_classes: int, settings: ClassifierTraining,
                 device: torch.device | str = "cpu", prepared: PreparedInputs | None = None) -> None:
        self.geometry, self.num_classes, self.settings, self.device = geometry, num_classes, settings, device
        self.prepared = prepared or PreparedInputs(geometry)

    def prepare(self, windows_mv: np.ndarray) -> ClassifierInputs:
        """Windows [N, leads, T] in mV as this classifier reads them (`evaluation.classifier_inputs`)."""
        return self.prepared(windows_mv)

    def fit(self, x: ClassifierInputs, y: np.ndarray, val_x: ClassifierInputs, val_y: np.ndarray,
            seed: int) -> Predictor:
        """Train on (x, y), early-stopping on (val_x, val_y); return the trained model's predict_proba."""
        with torch.random.fork_rng(devices=[]):  # seeded initialization without moving the caller's stream
            torch.manual_seed(seed)
            model = self.new_module(x)
        model = train_classifier(model, x, y, replace(self.settings, seed=seed), val_x=val_x, val_y=val_y,
                                 device=self.device)
        return lambda inputs: predict(model, inputs, device=self.device)

    def new_module(self, x: ClassifierInputs) -> nn.Module:
        return classifier_for(x, self.num_classes)


class _WindowsPrepared(DownstreamClassifier):
    """A user's classifier reads the normalized windows themselves."""

    def prepare(self, windows_mv: np.ndarray) -> ClassifierInputs:
        windows = self.geometry.normalized(windows_mv)
        return ClassifierInputs(windows, np.zeros((len(windows), 0), dtype=np.float32))


class TorchDownstream(_WindowsPrepared):
    """A user's `nn.Module` factory, trained by the project's loop."""

    def __init__(self, name: str, factory: Callable[..., nn.Module], *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.name, self.factory = name, factory

    def new_module(self, x: ClassifierInputs) -> nn.Module:
        return _SignalOnly(_build(self.name, self.factory, self.geometry, self.num_classes))


class SklearnDownstream(_WindowsPrepared):
    """A user's scikit-learn estimator factory, fitted on flattened normalized windows."""

    def __init__(self, name: str, factory: Callable[..., object], *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.name, self.factory = name, factory

    def fit(self, x: ClassifierInputs, y: np.ndarray, val_x: ClassifierInputs, val_y: np.ndarray,
            seed: int) -> Predictor:
        estimator = _build(self.name, self.factory, self.geometry, self.num_classes)
        if "random_state" in estimator.get_params():
            estimator.set_params(random_state=seed)
        estimator.fit(x.signal.reshape(len(x), -1), y)
        columns = np.asarray(estimator.classes_, dtype=np.int64)

        def predict_proba(inputs: ClassifierInputs) -> np.ndarray:
            probabilities = np.zeros((len(inputs), self.num_classes))
            probabilities[:, columns] = estimator.predict_proba(inputs.signal.reshape(len(inputs), -1))
            return probabilities

        return predict_proba


class _SignalOnly(nn.Module):
    """Adapts a user's module(windows) to the training loop's module(signal, features)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, signal: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.module(signal)


def load_downstream(spec: str, geometry: WindowGeometry, num_classes: int, settings: ClassifierTraining,
                    device: torch.device | str = "cpu", prepared: PreparedInputs | None = None) -> DownstreamClassifier:
    """The downstream classifier `spec` names (module docstring); ValueError or TypeError naming the spec if it
    cannot be used. `prepared` shares the built-in classifier's prepared inputs with other users of them."""
    if spec == BUILTIN:
        return DownstreamClassifier(geometry, num_classes, settings, device, prepared)
    factory = _import(spec)
    probe = _build(spec, factory, geometry, num_classes)
    if hasattr(probe, "fit") and hasattr(probe, "predict_proba") and hasattr(probe, "get_params"):
        return SklearnDownstream(spec, factory, geometry, num_classes, settings, device)
    if isinstance(probe, nn.Module):
        return TorchDownstream(spec, factory, geometry, num_classes, settings, device)
    raise TypeError(f"classifier {spec!r} returned a {type(probe).__name__}; it must return a scikit-learn "
                     "estimator (fit, predict_proba) or a torch.nn.Module")


def _import(spec: str) -> Callable:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"classifier {spec!r}: expected {BUILTIN!r} or 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"classifier {spec!r}: cannot import {module_name} ({error})") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise TypeError(f"classifier {spec!r}: {module_name} has no callable {attribute!r}")
    return factory


def _build(spec: str, factory: Callable, geometry: WindowGeometry, num_classes: int):
    """Call the factory with the keyword arguments it names among FACTORY_ARGUMENTS."""
    known = {"leads": len(geometry.mean), "samples": geometry.samples, "num_classes": num_classes,
             "fs_hz": geometry.fs_hz}
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        accepted = {}
    arguments = {name: known[name] for name in FACTORY_ARGUMENTS if name in accepted}
    try:
        return factory(**arguments)
    except Exception as error:  # noqa: BLE001 (a user's factory can raise anything; name it)
        raise ValueError(f"classifier {spec!r}: calling it with {arguments} failed ({type(error).__name__}: "
                         f"{error})") from None
