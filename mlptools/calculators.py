"""Reference calculators from a one-line spec: ``make_calculator("sw")``.

Embedded references need no external code:

=============  ==================================================================================
``emt``        ASE's EMT (Al, Cu, Ag, Au, Ni, Pd, Pt; H, C, N, O as a toy)
``lj``         Lennard-Jones; σ from the covalent radii of the species unless ``sigma=`` is given
``sw``         Stillinger–Weber silicon, the original 1985 parameters (this module, exact forces
               and stress)
``tersoff``    Tersoff silicon, the 1988 "T3" parameters (Si(C), PRB 38, 9902), via ASE's Tersoff
``xtb``        GFN2-xTB through tblite (``xtb:gfn1``, ``xtb:gfn2``); needs ``pip install tblite``
``model:F``    an mlptools model file (an interim ML potential, e.g. to drive MD)
=============  ==================================================================================

Any other ASE calculator is named by import path, ``module.path:ClassName key=value ...``, for
example ``ase.calculators.lj:LennardJones sigma=2.0 epsilon=0.1`` or
``ase.calculators.vasp:Vasp xc=PBE encut=400``. Values are Python literals where they parse as one
(``1e-3``, ``True``, ``[1, 2]``), strings otherwise. The embedded names take keyword arguments the
same way (``lj sigma=2.1 epsilon=0.05``, ``xtb:gfn1 electronic_temperature=500``).

Array suffixes follow the project convention: ``n`` atoms, ``p`` pairs, ``t`` triplets,
``c`` Cartesian.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import shlex

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.lj import LennardJones

from mlptools.errors import ComputationError, ParameterError

__all__ = [
    "KNOWN_CALCULATORS",
    "StillingerWeber",
    "calculator_from_argument",
    "check_species_supported",
    "isolated_atom_energies",
    "make_calculator",
    "parse_spec",
    "tersoff_si",
]

#: embedded reference names accepted by :func:`make_calculator`
KNOWN_CALCULATORS = ("emt", "lj", "sw", "tersoff", "xtb", "xtb:gfn1", "xtb:gfn2", "model:FILE")

#: Stillinger & Weber, Phys. Rev. B 31, 5262 (1985), silicon
SW_SI_1985 = {
    "epsilon": 2.1683,  # eV
    "sigma": 2.0951,  # Å
    "a": 1.80,
    "lambda_": 21.0,
    "gamma": 1.20,
    "A": 7.049556277,
    "B": 0.6022245584,
    "p": 4.0,
    "q": 0.0,
    "cos_theta0": -1.0 / 3.0,
}

#: Tersoff, Phys. Rev. B 38, 9902 (1988), Si(C) ("T3"), in the LAMMPS/ASE order
#: m, gamma, lambda3, c, d, h (= cos θ0), n, beta, lambda2, B, R, D, lambda1, A
TERSOFF_SI_T3 = (3.0, 1.0, 0.0, 1.0039e5, 16.217, -0.59825, 0.78734, 1.1e-6, 1.7322, 471.18,
                 2.85, 0.15, 2.4799, 1830.8)


def _parse_value(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_spec(spec):
    """Split a calculator spec into ``(name, kwargs)``.

    ``"lj sigma=2.0 epsilon=0.1"`` → ``("lj", {"sigma": 2.0, "epsilon": 0.1})``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ParameterError(f"empty calculator spec; use one of {', '.join(KNOWN_CALCULATORS)} "
                             "or module.path:ClassName key=value ...")
    try:
        words = shlex.split(spec)
    except ValueError as exc:
        raise ParameterError(f"calculator spec {spec!r}: {exc}") from None
    name, kwargs = words[0], {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key.isidentifier():
            raise ParameterError(f"calculator spec {spec!r}: expected key=value, got {word!r}")
        kwargs[key] = _parse_value(value)
    return name, kwargs


def make_calculator(spec):
    """Build an ASE calculator from a spec string (see the module docstring).

    Parameters
    ----------
    spec : str
        ``emt``, ``lj``, ``sw``, ``tersoff``, ``xtb[:gfn1|:gfn2]``, ``model:FILE`` or
        ``module.path:ClassName``, each optionally followed by ``key=value`` words.

    Returns
    -------
    ase.calculators.calculator.Calculator
        A new calculator (never shared between calls).

    Raises
    ------
    ParameterError
        Unknown name, import failure, or keyword arguments the calculator rejects.
    """
    name, kwargs = parse_spec(spec)
    lname = name.lower()
    try:
        if lname == "emt":
            from ase.calculators.emt import EMT

            return EMT(**kwargs)
        if lname == "lj":
            return _AutoLennardJones(**kwargs)
        if lname == "sw":
            return StillingerWeber(**kwargs)
        if lname == "tersoff":
            return tersoff_si(**kwargs)
        if lname in ("xtb", "xtb:gfn1", "xtb:gfn2"):
            return _make_xtb("GFN1-xTB" if lname == "xtb:gfn1" else "GFN2-xTB", kwargs)
        if lname.startswith("model:"):
            import mlptools

            return mlptools.load(name.split(":", 1)[1], **kwargs)
    except TypeError as exc:
        raise ParameterError(f"calculator {name!r}: {exc}") from None
    if ":" in name and lname.split(":", 1)[0] not in ("xtb", "model"):
        return _import_calculator(name, kwargs)
    close = difflib.get_close_matches(lname, KNOWN_CALCULATORS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ParameterError(
        f"unknown calculator {name!r}{hint} (known: {', '.join(KNOWN_CALCULATORS)}, or "
        "module.path:ClassName key=value ...)"
    )


def calculator_from_argument(text):
    """The calculator a command's MODEL argument names: a model file, or else a calculator spec.

    Every command that runs a potential (``validate``, ``md``, ``quench``, ``airss-search``,
    ``wulff``) takes either a fitted model (``model.h5``) or an embedded reference (``sw``,
    ``emt``, ``xtb``, ``module.path:Class key=value``), so users can compare the two.

    Raises
    ------
    ParameterError
        Neither an existing file nor a known calculator spec.
    """
    import os

    import mlptools

    if os.path.isfile(text):
        return mlptools.load(text)
    return make_calculator(text)


#: species each embedded reference was parametrised for (None: any species)
_PARAMETRISED_SPECIES = {
    "StillingerWeber": ("Si",),
    "Tersoff": ("Si",),
    "EMT": ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt", "H", "C", "N", "O"),
}


def check_species_supported(calc, numbers, where):
    """Raise InputError when ``calc`` has no parameters for a species in ``numbers``.

    A fitted model lists its species in ``calc.species`` (atomic numbers); the embedded references
    are known by class. Other calculators are not checked.

    Parameters
    ----------
    calc : ase Calculator
    numbers : (n_atoms,) int, atomic numbers of the structure
    where : str, prefix of the message (the file and frame, ``"si.xyz: frame 3"``)
    """
    from ase.data import atomic_numbers, chemical_symbols

    from mlptools.errors import InputError

    known = getattr(calc, "species", None)
    if known is None and type(calc).__name__ in _PARAMETRISED_SPECIES:
        known = [atomic_numbers[s] for s in _PARAMETRISED_SPECIES[type(calc).__name__]]
    if known is None:
        return
    missing = sorted(set(int(z) for z in numbers) - set(int(z) for z in known))
    if missing:
        names = ", ".join(chemical_symbols[z] for z in missing)
        have = ", ".join(chemical_symbols[int(z)] for z in sorted(known))
        raise InputError(f"{where}: species {names} not covered by the potential (it has {have})")


def _import_calculator(name, kwargs):
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise ParameterError(f"calculator {name!r}: expected module.path:ClassName")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ParameterError(
            f"calculator {name!r}: cannot import {module_name!r} ({exc})") from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ParameterError(f"calculator {name!r}: {module_name!r} has no {attr!r}") from None
    if not callable(obj):
        raise ParameterError(f"calculator {name!r}: {attr!r} is not callable")
    try:
        calc = obj(**kwargs)
    except TypeError as exc:
        raise ParameterError(f"calculator {name!r}: {exc}") from None
    if not hasattr(calc, "get_potential_energy"):
        raise ParameterError(f"calculator {name!r}: {type(calc).__name__} is not an ASE calculator")
    return calc


def _make_xtb(method, kwargs):
    try:
        from tblite.ase import TBLite
    except ImportError:
        raise ParameterError(
            "calculator 'xtb' needs tblite: pip install tblite (or pip install 'mlptools[xtb]')"
        ) from None
    kwargs = {"method": method, "verbosity": 0, **kwargs}
    return TBLite(**kwargs)


def tersoff_si(**kwargs):
    """ASE's Tersoff calculator with the Si(C) "T3" parameters of Tersoff (1988).

    Diamond Si: cohesive energy −4.63 eV/atom at a = 5.432 Å.
    """
    from ase.calculators.tersoff import Tersoff, TersoffParameters

    return Tersoff({("Si", "Si", "Si"): TersoffParameters(*TERSOFF_SI_T3)}, **kwargs)


# ---------------------------------------------------------------------------------------------
# Lennard-Jones with element-appropriate defaults
# ---------------------------------------------------------------------------------------------


class _AutoLennardJones(LennardJones):
    """ASE's LennardJones whose σ defaults to 2·r_cov/2^(1/6), the minimum at the bond length.

    σ is taken from the mean covalent radius of the species of the structure being computed
    (when ``sigma`` is not given); ε defaults to 0.1 eV, the cutoff to 3σ with ASE's smooth
    cutoff.
    """

    def __init__(self, **kwargs):
        self._auto_sigma = "sigma" not in kwargs
        kwargs.setdefault("epsilon", 0.1)
        kwargs.setdefault("smooth", True)
        super().__init__(**kwargs)

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        if self._auto_sigma and atoms is not None:
            from ase.data import covalent_radii

            sigma = 2.0 * float(np.mean(covalent_radii[atoms.numbers])) / 2 ** (1 / 6)
            if not np.isclose(self.parameters.sigma, sigma):
                self.parameters.sigma = sigma
                self.parameters.rc = 3.0 * sigma
                self.parameters.ro = 0.66 * self.parameters.rc
                self.nl = None
        super().calculate(atoms, properties, system_changes)


# ---------------------------------------------------------------------------------------------
# Stillinger-Weber
# ---------------------------------------------------------------------------------------------


class StillingerWeber(Calculator):
    r"""Stillinger–Weber potential (one species), vectorised NumPy with exact forces and stress.

    .. math::

        E = \sum_{i<j} \phi_2(r_{ij}) + \sum_i \sum_{j<k} \phi_3(r_{ij}, r_{ik}, \theta_{jik})

        \phi_2(r) = \varepsilon A \left[B (\sigma/r)^p - (\sigma/r)^q\right]
                    \exp\!\left(\frac{\sigma}{r - a\sigma}\right)

        \phi_3 = \varepsilon\lambda (\cos\theta_{jik} - \cos\theta_0)^2
                 \exp\!\left(\frac{\gamma\sigma}{r_{ij} - a\sigma}
                 + \frac{\gamma\sigma}{r_{ik} - a\sigma}\right)

    for r < aσ (3.7712 Å for Si). Energy depends on the positions only through the pair vectors
    D_p = r_j − r_i (+ cell shift), so with G_p = ∂E/∂D_p: F_i = Σ_{p: i→·} G_p − Σ_{p: ·→i} G_p
    and stress = (1/V) Σ_p D_p ⊗ G_p (ASE sign, eV/Å³). For a triplet with unit vectors u, v
    and cos θ = u·v: ∂cos θ/∂D_1 = (v − cos θ u)/r_1.

    Parameters default to Si, Stillinger & Weber (1985): ε = 2.1683 eV, σ = 2.0951 Å, a = 1.80,
    λ = 21.0, γ = 1.20, A = 7.049556277, B = 0.6022245584, p = 4, q = 0. The species is not
    checked, so the potential applies (in these units) to whatever element it is given.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]
    default_parameters = dict(SW_SI_1985)
    nolabel = True

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(SW_SI_1985)
        if unknown:
            raise TypeError(f"unknown Stillinger-Weber parameter(s) {sorted(unknown)}; "
                            f"valid: {', '.join(SW_SI_1985)}")
        super().__init__(**kwargs)

    @property
    def cutoff(self):
        """Cutoff aσ in Å."""
        return self.parameters["a"] * self.parameters["sigma"]

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.results = sw_energy_forces_stress(self.atoms, **self.parameters)


def _triplets(i_p, n_atoms):
    """All pairs (p1, p2), p1 < p2, of pair indices sharing the centre (i_p sorted)."""
    n_n = np.bincount(i_p, minlength=n_atoms)
    start_n = np.concatenate(([0], np.cumsum(n_n)[:-1]))
    reps = n_n[i_p]
    p1 = np.repeat(np.arange(len(i_p)), reps)
    # position of each repeated entry within its block
    block_start = np.repeat(np.cumsum(reps) - reps, reps)
    p2 = start_n[i_p[p1]] + (np.arange(len(p1)) - block_start)
    keep = p1 < p2
    return p1[keep], p2[keep]


def sw_energy_forces_stress(atoms, *, epsilon, sigma, a, lambda_, gamma, A, B, p, q, cos_theta0):
    """Stillinger–Weber energy (eV), per-atom energies, forces (eV/Å), stress (eV/Å³, Voigt)."""
    from mlptools.neighbors import neighbor_list

    n = len(atoms)
    rc = a * sigma
    i_p, j_p, d_p, D_pc = neighbor_list(
        "ijdD", atoms.positions, atoms.cell.array, atoms.pbc, rc
    )
    keep = d_p < rc * (1 - 1e-12)
    i_p, j_p, d_p, D_pc = i_p[keep], j_p[keep], d_p[keep], D_pc[keep]
    order = np.argsort(i_p, kind="stable")
    i_p, j_p, d_p, D_pc = i_p[order], j_p[order], d_p[order], D_pc[order]

    x_p = 1.0 / (d_p - rc)  # negative inside the cutoff
    s_p = sigma / d_p
    # two-body, counted once per ordered pair with a factor 1/2
    poly_p = B * s_p**p - s_p**q
    expo_p = np.exp(sigma * x_p)
    phi2_p = epsilon * A * poly_p * expo_p
    dpoly_p = (-p * B * s_p**p + q * s_p**q) / d_p
    dphi2_p = epsilon * A * expo_p * (dpoly_p - poly_p * sigma * x_p**2)
    u_pc = D_pc / d_p[:, None]
    G_pc = 0.5 * dphi2_p[:, None] * u_pc
    energies_n = 0.5 * np.bincount(i_p, weights=phi2_p, minlength=n)

    # three-body, centred on i for each pair of its neighbours j < k
    p1, p2 = _triplets(i_p, n)
    if len(p1):
        h1 = np.exp(gamma * sigma * x_p[p1])
        h2 = np.exp(gamma * sigma * x_p[p2])
        u1, u2 = u_pc[p1], u_pc[p2]
        cos_t = np.einsum("tc,tc->t", u1, u2)
        dcos_t = cos_t - cos_theta0
        hh_t = epsilon * lambda_ * h1 * h2
        phi3_t = hh_t * dcos_t**2
        energies_n += np.bincount(i_p[p1], weights=phi3_t, minlength=n)
        # ∂φ3/∂r_1 = φ3·(−γσ x_1²); ∂φ3/∂cos = 2 hh (cos − cos0)
        dr1 = -phi3_t * gamma * sigma * x_p[p1] ** 2
        dr2 = -phi3_t * gamma * sigma * x_p[p2] ** 2
        dcos = 2.0 * hh_t * dcos_t
        g1 = dr1[:, None] * u1 + (dcos / d_p[p1])[:, None] * (u2 - cos_t[:, None] * u1)
        g2 = dr2[:, None] * u2 + (dcos / d_p[p2])[:, None] * (u1 - cos_t[:, None] * u2)
        for c in range(3):
            G_pc[:, c] += np.bincount(p1, weights=g1[:, c], minlength=len(i_p))
            G_pc[:, c] += np.bincount(p2, weights=g2[:, c], minlength=len(i_p))

    forces_nc = np.zeros((n, 3))
    for c in range(3):
        forces_nc[:, c] = np.bincount(i_p, weights=G_pc[:, c], minlength=n) - np.bincount(
            j_p, weights=G_pc[:, c], minlength=n
        )
    energy = float(energies_n.sum())
    results = {
        "energy": energy,
        "free_energy": energy,
        "energies": energies_n,
        "forces": forces_nc,
    }
    if atoms.pbc.all():
        volume = atoms.get_volume()
        sigma_cc = D_pc.T @ G_pc / volume
        sigma_cc = 0.5 * (sigma_cc + sigma_cc.T)
        results["stress"] = sigma_cc[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return results


# ---------------------------------------------------------------------------------------------
# isolated atoms
# ---------------------------------------------------------------------------------------------


def isolated_atom_energies(species, make_calc, *, box=20.0):
    """Energy (eV) of each species as a single atom in a big non-periodic box (the E0 of a fit).

    Parameters
    ----------
    species : iterable of str or int
        Chemical symbols or atomic numbers.
    make_calc : callable or str
        A calculator spec, or a no-argument function returning a fresh calculator.
    box : float, Å
        Edge of the cubic box; the atom sits in its centre, ``pbc=False``.

    Returns
    -------
    dict of str to float
        ``{"Si": e0, ...}``, sorted by atomic number.

    Raises
    ------
    ComputationError
        The calculator failed on an isolated atom (names the species).
    """
    from ase.data import atomic_numbers, chemical_symbols

    if isinstance(make_calc, str):
        spec = make_calc
        make_calc = lambda: make_calculator(spec)  # noqa: E731
    symbols = sorted({chemical_symbols[s] if isinstance(s, (int, np.integer)) else s
                      for s in species}, key=lambda s: atomic_numbers[s])
    e0 = {}
    for symbol in symbols:
        atoms = isolated_atom(symbol, box=box)
        atoms.calc = make_calc()
        try:
            e0[symbol] = float(atoms.get_potential_energy())
        except Exception as exc:  # any calculator failure, reported with the species
            raise ComputationError(f"isolated {symbol} atom: {type(exc).__name__}: {exc}") from None
    return e0


def isolated_atom(symbol, *, box=20.0):
    """A single atom in the centre of a cubic box of edge ``box`` Å, ``pbc=False``."""
    from ase import Atoms

    return Atoms(symbol, positions=[[box / 2] * 3], cell=[box] * 3, pbc=False)
