"""mlptools: composable command-line tools for machine-learned interatomic potentials.

Units throughout: energies eV, lengths Å, forces eV/Å, stress eV/Å³ in the library (GPa at the CLI
surface), time fs, temperature K.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(path, **kwargs):
    """Load a fitted model file and return it as an ASE calculator.

    Parameters
    ----------
    path : str or os.PathLike
        An mlptools model file (HDF5) written by ``mlptools fit``.
    **kwargs
        Passed to :class:`mlptools.models.calculator.MlpCalculator` (``uncertainty=True``
        computes the uncertainty results at every call).
    """
    from mlptools.models.calculator import load_calculator

    return load_calculator(path, **kwargs)
