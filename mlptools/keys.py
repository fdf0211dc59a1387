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

# Uncertainty results of an mlptools calculator (GAP posterior, committee spread): every model kind
# fills the same keys so `md --max-uncertainty` and `build-db --explore` work with all of them.
ENERGY_UNCERTAINTY = "energy_uncertainty"  # eV, standard deviation of the total energy
ENERGIES_UNCERTAINTY = "energies_uncertainty"  # eV, (n_atoms,) std of each local energy
FORCES_UNCERTAINTY = "forces_uncertainty"  # eV/Å, (n_atoms,) std estimate of each atom's force
