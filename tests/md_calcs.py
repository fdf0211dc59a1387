"""Test calculators for MD: a growing (fake) model uncertainty, and a potential that fails.

Importable as ``md_calcs:Class`` calculator specs (pytest puts tests/ on sys.path; subprocess
tests add it to PYTHONPATH).
"""

import numpy as np
from ase.calculators.calculator import all_changes

from mlptools import keys
from mlptools.calculators import StillingerWeber


class GrowingUncertaintySW(StillingerWeber):
    """Stillinger-Weber that also reports an uncertainty growing by ``rate`` per calculation.

    ``kind="energies"`` fills energies_uncertainty (n_atoms,) eV and energy_uncertainty;
    ``kind="forces"`` fills forces_uncertainty (n_atoms,) eV/Å only. Atom 0 is the most
    uncertain, so the guard's maximum is ``rate * calls``.
    """

    def __init__(self, rate=0.01, kind="energies"):
        super().__init__()
        self.rate = rate
        self.kind = kind
        self.calls = 0

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        n = len(self.atoms)
        per_atom = self.rate * self.calls * np.linspace(1.0, 0.5, n)
        if self.kind == "energies":
            self.results[keys.ENERGIES_UNCERTAINTY] = per_atom
            self.results[keys.ENERGY_UNCERTAINTY] = float(np.sqrt((per_atom**2).sum()))
        else:
            self.results[keys.FORCES_UNCERTAINTY] = per_atom


class FailingSW(StillingerWeber):
    """Stillinger-Weber whose energy becomes NaN after ``after`` calculations."""

    def __init__(self, after=20):
        super().__init__()
        self.after = after
        self.calls = 0

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        if self.calls > self.after:
            self.results["energy"] = float("nan")


class OnDemandUncertaintySW(StillingerWeber):
    """Stillinger-Weber that computes its (constant) energies_uncertainty only when asked for
    it by name, as a model whose uncertainty costs extra may do."""

    implemented_properties = [*StillingerWeber.implemented_properties,
                              keys.ENERGIES_UNCERTAINTY]

    def __init__(self, value=0.2):
        super().__init__()
        self.value = value

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if properties and keys.ENERGIES_UNCERTAINTY in properties:
            self.results[keys.ENERGIES_UNCERTAINTY] = np.full(len(self.atoms), self.value)
