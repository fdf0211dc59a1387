"""The library half of ``mlptools fit``: fit a model kind, then its train/valid error tables."""

import dataclasses
import logging
import time

from mlptools.errors import InputError, ParameterError

log = logging.getLogger(__name__)

KINDS = ("gap", "linear", "quadratic", "nn")


@dataclasses.dataclass
class FitResult:
    """A fitted model with its error tables (:class:`mlptools.metrics.ErrorReport`)."""

    model: object
    train_errors: object
    valid_errors: object | None
    fit_seconds: float


def hypers_class(kind):
    from mlptools.models import gap, linear, nn

    return {"gap": gap.GapHypers, "linear": linear.LinearHypers,
            "quadratic": linear.LinearHypers, "nn": nn.NNHypers}[kind]


def _fitter(kind):
    from mlptools.models import gap, linear, nn

    def fit_quadratic(frames, hypers, *, rng, **kwargs):
        return linear.fit_linear(frames, hypers, rng=rng, quadratic=True, **kwargs)

    fitters = {"gap": gap.fit_gap, "linear": linear.fit_linear, "quadratic": fit_quadratic,
               "nn": nn.fit_nn}
    if kind not in fitters:
        raise ParameterError(f"unknown model kind {kind!r} (use {', '.join(KINDS)})")
    return fitters[kind]


def fit(kind, frames, hypers, *, rng, committee=0, descriptors=None, checkpoint=None, comm=None):
    """Fit one model of ``kind``, or with ``committee`` >= 2 a committee of that many.

    One model: :func:`mlptools.models.gap.fit_gap`, :func:`~.linear.fit_linear` or
    :func:`~.nn.fit_nn`. Committees: :func:`~.committee.fit_nn_committee` (descriptors
    shared) for nn, else :func:`~.committee.fit_committee` (bootstrap resamples of the frames).
    ``checkpoint`` (nn only): path of the training checkpoint; a rerun resumes from it.
    ``comm`` (an mpi4py communicator): a single GAP assembles its design rows on all ranks
    (:func:`~mlptools.models.gap.fit_gap`); other kinds fit the same model on every rank.
    """
    from mlptools.models.gap import _as_hypers

    fit_one = _fitter(kind)
    if checkpoint is not None:
        if kind != "nn":
            raise ParameterError("--checkpoint applies to --model nn only")
        from mlptools.models.nn import NNCheckpoint

        checkpoint = NNCheckpoint(checkpoint)
        if not committee:
            return fit_one(frames, hypers, rng=rng, checkpoint=checkpoint)
    if not committee:
        extra = {"comm": comm} if kind == "gap" and comm is not None else {}
        if descriptors is not None:
            if kind == "nn":
                raise ParameterError("--descriptors applies to gap, linear and quadratic")
            return fit_one(frames, hypers, rng=rng, descriptors=descriptors, **extra)
        return fit_one(frames, hypers, rng=rng, **extra)
    if descriptors is not None:
        raise ParameterError("--descriptors cannot be combined with --committee")
    from mlptools.models import committee as cm

    hypers = _as_hypers(hypers, hypers_class(kind))
    if kind == "nn":
        return cm.fit_nn_committee(frames, hypers, n_members=committee, rng=rng,
                                   checkpoint=checkpoint)
    return cm.fit_committee(fit_one, frames, hypers, n_members=committee, rng=rng)


def prediction_errors(model, frames, *, uncertainty=False):
    """(ErrorReport, predictions) of ``model`` on labelled ``frames``."""
    from mlptools.metrics import compute_errors

    preds = [model.predict(a, uncertainty=uncertainty) for a in frames]
    return compute_errors(frames, preds), preds


def fit_model(kind, train, hypers, *, rng, valid=None, valid_name="valid", descriptors=None,
              committee=0, checkpoint=None, comm=None):
    """Fit, then fill ``model.training_errors`` (and the uncertainty calibration).

    GAP's force-uncertainty scale is calibrated on the training set; a committee's spread on
    the validation set when one is given, else on the training set.

    Parameters
    ----------
    kind : "gap", "linear", "quadratic" or "nn"
    train, valid : lists of labelled ase.Atoms (valid optional)
    hypers : the kind's hypers (dataclass, dict or spec string)
    rng : numpy.random.Generator
    descriptors : DescriptorSet, optional, precomputed SOAP of ``train`` (see ``fit_gap``)
    committee : int, 0 for one model, else the number of committee members (>= 2)
    checkpoint : path, optional (nn only), training checkpoint to save to and resume from
    comm : mpi4py communicator, optional; see :func:`fit` (every rank returns the same result)

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
    model = fit(kind, train, hypers, rng=rng, committee=committee, descriptors=descriptors,
                checkpoint=checkpoint, comm=comm)
    seconds = time.perf_counter() - t0
    log.info("%s: fitted in %.1f s", kind, seconds)
    if committee:
        from mlptools.models.committee import calibrate

        scales = calibrate(model, valid or train)
        log.info("committee: uncertainty scales %.3g (energy), %.3g (forces) from %s", *scales,
                 valid_name if valid else "the training set")
    is_gap = isinstance(model, gap.GapModel)
    train_errors, preds = prediction_errors(model, train, uncertainty=is_gap)
    if is_gap:
        gap.calibrate_force_uncertainty(model, train, preds)
    valid_errors = prediction_errors(model, valid)[0] if valid else None
    model.training_errors = {"train": train_errors.to_dict(),
                             "valid": None if valid_errors is None else valid_errors.to_dict(),
                             "fit_seconds": seconds}
    return FitResult(model, train_errors, valid_errors, seconds)
