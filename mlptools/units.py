"""Unit conversions. Library values are eV, Å, eV/Å, eV/Å³, fs, K; the CLI shows stress in GPa."""

from ase import units as _ase_units

#: 1 eV/Å³ in GPa
EV_PER_A3_TO_GPA = 1.0 / _ase_units.GPa
#: 1 GPa in eV/Å³
GPA_TO_EV_PER_A3 = _ase_units.GPa
#: 1 eV/Å² in J/m²
EV_PER_A2_TO_J_PER_M2 = _ase_units._e * 1e20
