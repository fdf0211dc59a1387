"""Fixed baselines added before the ML terms: the ZBL universal repulsive pair potential.

ZBL (Ziegler, Biersack, Littmark 1985)::

    φ(r) = (Z1 Z2 e²/4πε0) / r · Σ_k c_k exp(−d_k r/a),   a = 0.46850 Å / (Z1^0.23 + Z2^0.23)
    (c, d) = (0.18175, 3.19980), (0.50986, 0.94229), (0.28022, 0.40290), (0.02817, 0.20162)

switched off smoothly between r_in and r_out by S(t) = 1 − t³(10 − 15t + 6t²),
t = (r − r_in)/(r_out − r_in) (C² at both ends). The pair energy is V(r) = φ(r) S(r), split half
to each atom. r_out is ``outer`` × the sum of the two covalent radii (ase.data.covalent_radii),
lowered by :meth:`ZBL.fit_to` to ``margin`` below the shortest distance of that pair in the
training data, and r_in = r_out·inner/outer: the term acts only at contacts closer than any
training structure (Si–Si: 1.09–1.63 Å against 1.83 Å in the mlearn data and 2.35 Å in the
crystal; Mo–Mo: 1.12–1.68 Å against 1.88 Å), so the ML terms alone fit the data. The radii used
are stored per pair in the model file.

Forces and stress are exact derivatives: with D = r_j − r_i (+ image shift) and V' = dV/dr,
F_j −= V' D/r, F_i += V' D/r, dE/dε_ab = Σ_pairs V' D_a D_b / r.
"""

import numpy as np

from mlptools.errors import ParameterError

E2_4PIEPS0 = 14.399645478425668  # e²/(4πε0) in eV·Å
_C = np.array([0.18175, 0.50986, 0.28022, 0.02817])
_D = np.array([3.19980, 0.94229, 0.40290, 0.20162])


def from_dict(data):
    """A baseline from its ``to_dict()`` (or None for ``{"kind": "none"}``)."""
    data = dict(data or {})
    kind = data.pop("kind", "none")
    if kind == "none":
        return None
    if kind == "zbl":
        pairs = data.pop("pairs", [])
        zbl = ZBL(**data)
        zbl.pair_radii = {(int(a), int(b)): (float(r0), float(r1)) for a, b, r0, r1 in pairs}
        return zbl
    raise ParameterError(f"unknown baseline {kind!r} (use zbl or none)")


def from_string(text):
    """``"zbl"``, ``"zbl inner=0.5 outer=0.75"`` or ``"none"``."""
    words = (text or "none").split()
    data = {"kind": words[0]}
    for w in words[1:]:
        if "=" not in w:
            raise ParameterError(f"--baseline: expected key=value, got {w!r}")
        k, v = w.split("=", 1)
        try:
            data[k] = float(v)
        except ValueError:
            raise ParameterError(f"--baseline: cannot read {v!r} as a number") from None
    try:
        return from_dict(data)
    except TypeError as exc:
        raise ParameterError(f"--baseline: {exc}") from None


def zbl_pair(r, z1, z2):
    """ZBL φ(r) (eV) and dφ/dr (eV/Å) for distances r (Å)."""
    a = 0.46850 / (z1 ** 0.23 + z2 ** 0.23)
    r = np.asarray(r, dtype=np.float64)
    ex = np.exp(-np.multiply.outer(r, _D) / a)
    screen = ex @ _C
    dscreen = -(ex @ (_C * _D)) / a
    pref = E2_4PIEPS0 * z1 * z2
    phi = pref * screen / r
    dphi = pref * (dscreen / r - screen / r ** 2)
    return phi, dphi


def _switch(r, r_in, r_out):
    t = np.clip((r - r_in) / (r_out - r_in), 0.0, 1.0)
    s = 1.0 - t ** 3 * (10.0 - 15.0 * t + 6.0 * t ** 2)
    ds = -30.0 * t ** 2 * (1.0 - t) ** 2 / (r_out - r_in)
    return s, ds


class ZBL:
    """ZBL repulsion switched off between ``inner`` and ``outer`` × (r_cov,1 + r_cov,2)."""

    kind = "zbl"

    def __init__(self, inner=0.5, outer=0.75, margin=0.2):
        if not (0 < inner < outer):
            raise ParameterError(f"zbl baseline: need 0 < inner < outer, got inner={inner}, "
                                 f"outer={outer}")
        if not margin >= 0:
            raise ParameterError(f"zbl baseline: margin must be >= 0 Å, got {margin}")
        self.inner, self.outer, self.margin = float(inner), float(outer), float(margin)
        self.pair_radii = {}

    def to_dict(self):
        return {"kind": self.kind, "inner": self.inner, "outer": self.outer,
                "margin": self.margin,
                "pairs": [[a, b, r0, r1] for (a, b), (r0, r1) in sorted(self.pair_radii.items())]}

    def radii(self, z1, z2):
        """(r_in, r_out) in Å for the pair of species."""
        from ase.data import covalent_radii

        key = (min(z1, z2), max(z1, z2))
        if key in self.pair_radii:
            return self.pair_radii[key]
        s = covalent_radii[z1] + covalent_radii[z2]
        return self.inner * s, self.outer * s

    def fit_to(self, frames, species):
        """Lower r_out of each pair to ``margin`` below its shortest distance in ``frames``."""
        from mlptools.neighbors import neighbor_list

        rc = self.max_cutoff(species)
        shortest = {}
        for atoms in frames:
            i, j, d = neighbor_list("ijd", atoms.positions, atoms.cell.array, atoms.pbc, rc)
            if len(d) == 0:
                continue
            zi, zj = atoms.numbers[i], atoms.numbers[j]
            for a, b, r in zip(np.minimum(zi, zj), np.maximum(zi, zj), d, strict=True):
                key = (int(a), int(b))
                shortest[key] = min(shortest.get(key, np.inf), float(r))
        for key, r_min in shortest.items():
            r_in, r_out = self.radii(*key)
            r_out_new = min(r_out, r_min - self.margin)
            if r_out_new < r_out:
                r_out_new = max(r_out_new, 0.1)
                self.pair_radii[key] = (r_out_new * self.inner / self.outer, r_out_new)
        return self

    def max_cutoff(self, species):
        return max((self.radii(a, b)[1] for a in species for b in species), default=0.0)

    def compute(self, atoms, *, forces=True, stress=True):
        """``energies`` (n,) eV, ``forces`` (n, 3) eV/Å, ``virial_de`` dE/dε (3, 3) eV."""
        from mlptools.neighbors import neighbor_list

        n = len(atoms)
        numbers = atoms.numbers
        species = np.unique(numbers)
        out = {"energies": np.zeros(n), "forces": np.zeros((n, 3)),
               "virial_de": np.zeros((3, 3))}
        rc = self.max_cutoff(species)
        if n == 0 or rc <= 0:
            return out
        i, j, D = neighbor_list("ijD", atoms.positions, atoms.cell.array, atoms.pbc, rc)
        if len(i) == 0:
            return out
        r = np.linalg.norm(D, axis=1)
        v = np.zeros_like(r)
        dv = np.zeros_like(r)
        zi, zj = numbers[i], numbers[j]
        for a in species:
            for b in species:
                sel = (zi == a) & (zj == b)
                if not sel.any():
                    continue
                r_in, r_out = self.radii(int(a), int(b))
                rs = r[sel]
                phi, dphi = zbl_pair(rs, int(a), int(b))
                s, ds = _switch(rs, r_in, r_out)
                v[sel] = phi * s
                dv[sel] = dphi * s + phi * ds
        # full neighbour list: every pair appears twice, so each entry carries half the energy
        out["energies"] = 0.5 * np.bincount(i, weights=v, minlength=n)
        g = (0.5 * dv / r)[:, None] * D          # dE/dD of each directed entry
        if forces:
            f = np.zeros((n, 3))
            for c in range(3):
                f[:, c] = np.bincount(i, weights=g[:, c], minlength=n) - np.bincount(
                    j, weights=g[:, c], minlength=n)
            out["forces"] = f
        if stress:
            out["virial_de"] = D.T @ g
        return out
