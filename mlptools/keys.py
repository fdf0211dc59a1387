"""Key names of labels in extxyz and HDF5 files, in one place (ASE / GAP / MACE compatible)."""

ENERGY = "energy"  # eV, total energy of the cell
FORCES = "forces"  # eV/Å, (n_atoms, 3)
STRESS = "stress"  # eV/Å³, ASE sign (positive = tensile)
VIRIAL = "virial"  # eV, 3x3, = -stress * volume (QUIP/GAP convention)
CONFIG_TYPE = "config_type"
WEIGHT = "weight"  # per-frame fitting weight (dimensionless)

#: labels a reference calculation provides
LABELS = (ENERGY, FORCES, STRESS)

#: prefix of predictions, so they never overwrite references (as janus-core does)
PREDICTION_PREFIX = "mlptools_"

DEFAULT_CONFIG_TYPE = "default"
