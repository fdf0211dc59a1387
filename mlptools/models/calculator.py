"""ASE calculator of a fitted mlptools model (any kind in :data:`base.MODEL_KINDS`)."""

from ase.calculators.calculator import Calculator, all_changes

from mlptools import keys

__all__ = ["MlpCalculator", "load_calculator"]

_UNCERTAINTY = (keys.ENERGY_UNCERTAINTY, keys.ENERGIES_UNCERTAINTY, keys.FORCES_UNCERTAINTY)


class MlpCalculator(Calculator):
    """Energy (eV), per-atom energies, forces (eV/Å), stress (eV/Å³, ASE sign) and uncertainties.

    Parameters
    ----------
    model : mlptools.models.base.Model
    uncertainty : bool
        Always compute the uncertainty keys (otherwise only when one is asked for).

    Attributes
    ----------
    model : the fitted model; species : tuple of atomic numbers; cutoff : Å
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress",
                              *_UNCERTAINTY]

    def __init__(self, model, uncertainty=False, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.uncertainty = bool(uncertainty)

    @property
    def species(self):
        return self.model.species

    @property
    def cutoff(self):
        return self.model.cutoff

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        want_unc = self.uncertainty or any(p in _UNCERTAINTY for p in properties)
        res = self.model.predict(self.atoms, forces=True, stress=self.atoms.cell.rank == 3,
                                 uncertainty=want_unc)
        self.results.update(res)


def load_calculator(path, **kwargs):
    """An :class:`MlpCalculator` for the model file at ``path`` (kwargs go to the calculator)."""
    from mlptools.models.base import load_model

    return MlpCalculator(load_model(path), **kwargs)
