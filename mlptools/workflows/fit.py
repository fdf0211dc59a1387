"""The library half of ``mlptools fit``: fit a model kind, then its train/valid error tables."""

import dataclasses
import logging
import time

from mlptools.errors import InputError, ParameterError

log = logging.getLogger(__name__)

KINDS = ("gap", "linear", "quadratic")


@dataclasses.dataclass
class FitResult:
    """A fitted model with its error tables (:class:`mlptools.metrics.ErrorReport`)."""

    model: object
    train_errors: object
    valid_errors: object | None
    fit_seconds: float


def hypers_class(kind):
    from mlptools.models import gap, linear

    return {"gap": gap.GapHypers, "linear": linear.LinearHypers,
            "quadratic": linear.LinearHypers}[kind]


def fit(kind, frames, hypers, *, rng):
    """Fit one kind: :func:`mlptools.models.gap.fit_gap` or :func:`~.linear.fit_linear`."""
    from mlptools.models import gap, linear

    if kind == "gap":
        return gap.fit_gap(frames, hypers, rng=rng)
    if kind in ("linear", "quadratic"):
        return linear.fit_linear(frames, hypers, rng=rng, quadratic=kind == "quadratic")
    raise ParameterError(f"unknown model kind {kind!r} (use {', '.join(KINDS)})")


def prediction_errors(model, frames, *, uncertainty=False):
    """(ErrorReport, predictions) of ``model`` on labelled ``frames``."""
    from mlptools.metrics import compute_errors

    preds = [model.predict(a, uncertainty=uncertainty) for a in frames]
    return compute_errors(frames, preds), preds


def check_valid_species(model, frames, name):
    from mlptools.models.base import species_symbols

    for k, atoms in enumerate(frames):
        extra = sorted(set(int(z) for z in atoms.numbers) - set(model.species))
        if extra:
            raise InputError(f"{name}: frame {k}: species {species_symbols(extra)} not in the "
                             f"training data ({species_symbols(model.species)})")


def fit_model(kind, train, hypers, *, rng, valid=None, valid_name="valid"):
    """Fit, then fill ``model.training_errors`` (and GAP's force-uncertainty scale).

    Parameters
    ----------
    kind : "gap", "linear" or "quadratic"
    train, valid : lists of labelled ase.Atoms (valid optional)
    hypers : the kind's hypers (dataclass, dict or spec string)
    rng : numpy.random.Generator

    Returns
    -------
    FitResult
    """
    from mlptools.models import gap

    train_species = {int(z) for a in train for z in a.numbers}
    if valid:
        for k, atoms in enumerate(valid):
            extra = sorted(set(int(z) for z in atoms.numbers) - train_species)
            if extra:
                from mlptools.models.base import species_symbols

                raise InputError(f"{valid_name}: frame {k}: species {species_symbols(extra)} "
                                 f"not in the training data "
                                 f"({species_symbols(sorted(train_species))})")
    t0 = time.perf_counter()
    model = fit(kind, train, hypers, rng=rng)
    seconds = time.perf_counter() - t0
    log.info("%s: fitted in %.1f s", kind, seconds)
    is_gap = isinstance(model, gap.GapModel)
    train_errors, preds = prediction_errors(model, train, uncertainty=is_gap)
    if is_gap:
        gap.calibrate_force_uncertainty(model, train, preds)
    valid_errors = prediction_errors(model, valid)[0] if valid else None
    model.training_errors = {"train": train_errors.to_dict(),
                             "valid": None if valid_errors is None else valid_errors.to_dict(),
                             "fit_seconds": seconds}
    return FitResult(model, train_errors, valid_errors, seconds)
