"""Fixed pair baselines added before the ML terms: ZBL repulsion, or a pair table from a file.

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

A pair table (:class:`PairTable`, ``--baseline "table FILE"``) reads LAMMPS ``pair_style table``
files: one section per pair, headed by a keyword naming the two elements (``Si-Si``, ``Si_O``), a
line ``N n [R rlo rhi | RSQ rlo rhi]``, then ``n`` lines ``index r energy force`` (Å, eV, eV/Å).
V(r) is the cubic spline through the energies (its derivative gives the forces, so they stay exact
derivatives and MD conserves energy; the table's force column is not used), shifted
so that V(r_max) = 0 (LAMMPS' ``pair_modify shift yes``), zero beyond r_max and continued
linearly below r_min. Pairs the file does not name get no baseline. The grids and energies are
stored in the model file, so it stays self-contained.
"""

import numpy as np

from mlptools.errors import ParameterError

E2_4PIEPS0 = 14.399645478425668  # e²/(4πε0) in eV·Å
_C = np.array([0.18175, 0.50986, 0.28022, 0.02817])
_D = np.array([3.19980, 0.94229, 0.40290, 0.20162])


def from_dict(data, arrays=None):
    """A baseline from its ``to_dict()`` and ``arrays()`` (None for ``{"kind": "none"}``)."""
    data = dict(data or {})
    kind = data.pop("kind", "none")
    if kind == "none":
        return None
    if kind == "zbl":
        pairs = data.pop("pairs", [])
        zbl = ZBL(**data)
        zbl.pair_radii = {(int(a), int(b)): (float(r0), float(r1)) for a, b, r0, r1 in pairs}
        return zbl
    if kind == "table":
        return PairTable.from_arrays(data, arrays or {})
    raise ParameterError(f"unknown baseline {kind!r} (use zbl, table FILE or none)")


def from_string(text):
    """``"zbl"``, ``"zbl inner=0.5 outer=0.75"``, ``"table FILE [keyword=KEY]"`` or ``"none"``."""
    words = (text or "none").split()
    if words[0] == "table":
        return _table_from_words(words[1:])
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


def _table_from_words(words):
    path, keyword = None, None
    for w in words:
        k, sep, v = w.partition("=")
        if sep and k == "keyword":
            keyword = v
        elif sep and k == "file":
            path = v
        elif not sep and path is None:
            path = w
        else:
            raise ParameterError(f"--baseline table: unexpected {w!r} (use \"table FILE "
                                 f"[keyword=KEY]\")")
    if path is None:
        raise ParameterError("--baseline table: name the table file (\"table FILE\")")
    return PairTable.from_file(path, keyword=keyword)


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


class PairBaseline:
    """A sum of pair energies V_ab(r) within ``max_cutoff``; subclasses give V and dV/dr."""

    kind = ""

    def arrays(self):
        """Arrays stored beside ``to_dict()`` in the model file (name -> ndarray)."""
        return {}

    def pair_energy(self, r, z1, z2):
        """V(r) (eV) and dV/dr (eV/Å) of the pair (z1, z2) at distances r (Å)."""
        raise NotImplementedError

    def max_cutoff(self, species):
        raise NotImplementedError

    def fit_to(self, frames, species):
        """Adapt to the training frames (nothing by default)."""
        return self

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
                if sel.any():
                    v[sel], dv[sel] = self.pair_energy(r[sel], int(a), int(b))
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


class ZBL(PairBaseline):
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

    def pair_energy(self, r, z1, z2):
        r_in, r_out = self.radii(z1, z2)
        phi, dphi = zbl_pair(r, z1, z2)
        sw, dsw = _switch(r, r_in, r_out)
        return phi * sw, dphi * sw + phi * dsw


# ------------------------------------------------------------------------------------ pair table


def _element(token):
    from ase.data import atomic_numbers

    z = atomic_numbers.get(token[:1].upper() + token[1:].lower())
    return None if z is None or z == 0 else z


def _pair_of(keyword):
    """(z1, z2) sorted, from ``Si-Si``, ``Si_O``, ``SI-O``; None if it names no pair."""
    import re

    parts = [p for p in re.split(r"[-_:/ ]", keyword) if p]
    if len(parts) == 2:
        zs = [_element(p) for p in parts]
        if None not in zs:
            return min(zs), max(zs)
    return None


def read_lammps_table(path):
    """Sections of a LAMMPS ``pair_style table`` file: ``{keyword: (r, energy, force)}`` (Å, eV,
    eV/Å), with r recomputed from ``R``/``RSQ`` when the section's parameter line gives them.

    Raises
    ------
    InputError
        An unreadable file or a malformed section (the message names the file and line).
    """
    from mlptools.errors import InputError

    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read pair table: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text pair table") from None
    body = [(k + 1, ln.split("#", 1)[0].split()) for k, ln in enumerate(lines)]
    body = [(k, w) for k, w in body if w]
    sections, pos = {}, 0
    while pos < len(body):
        line_no, words = body[pos]
        if len(words) != 1 or pos + 1 >= len(body) or body[pos + 1][1][0] != "N":
            raise InputError(f"{path}:{line_no}: expected a section keyword followed by an "
                             f"'N n ...' line, got {' '.join(words)!r}")
        keyword = words[0]
        p_line, params = body[pos + 1]
        try:
            n = int(params[1])
            opts = {params[k].upper(): params[k + 1:k + 3] for k in range(2, len(params))
                    if params[k].upper() in ("R", "RSQ")}
        except (IndexError, ValueError):
            raise InputError(f"{path}:{p_line}: cannot read {' '.join(params)!r} as "
                             f"'N n [R rlo rhi]'") from None
        rows = body[pos + 2:pos + 2 + n]
        if n < 4 or len(rows) < n:
            raise InputError(f"{path}:{p_line}: section {keyword!r} needs N >= 4 rows, "
                             f"has {len(rows)} of {n}")
        try:
            data = np.array([[float(x) for x in w[1:4]] for _, w in rows])
        except ValueError:
            raise InputError(f"{path}: section {keyword!r}: a row is not 'index r energy "
                             f"force'") from None
        if data.shape != (n, 3) or not np.isfinite(data).all():
            raise InputError(f"{path}: section {keyword!r}: every row needs 'index r energy "
                             f"force' with finite numbers")
        r = data[:, 0]
        if "R" in opts:
            r = np.linspace(float(opts["R"][0]), float(opts["R"][1]), n)
        elif "RSQ" in opts:
            r = np.sqrt(np.linspace(float(opts["RSQ"][0]) ** 2, float(opts["RSQ"][1]) ** 2, n))
        if not (r[0] > 0 and np.all(np.diff(r) > 0)):
            raise InputError(f"{path}: section {keyword!r}: distances must be positive and "
                             f"increasing")
        sections[keyword] = (r, data[:, 1], data[:, 2])
        pos += 2 + n
    if not sections:
        raise InputError(f"{path}: no pair-table sections")
    return sections


class PairTable(PairBaseline):
    """Tabulated pair energies V_ab(r): cubic spline, shifted to 0 at the table's last r."""

    kind = "table"

    def __init__(self, tables, source=""):
        """``tables``: {(z1, z2) or "*" (every pair): (r (Å), energy (eV))}, r increasing;
        ``source``: where the table came from (provenance)."""
        from scipy.interpolate import CubicSpline

        self.source = str(source)
        self.tables = {}
        self._splines = {}
        for pair, (r, e) in tables.items():
            key = "*" if pair == "*" else (min(int(pair[0]), int(pair[1])),
                                           max(int(pair[0]), int(pair[1])))
            r, e = np.asarray(r, dtype=np.float64), np.asarray(e, dtype=np.float64)
            self.tables[key] = (r, e)
            spline = CubicSpline(r, e - e[-1])
            self._splines[key] = (spline, spline.derivative())

    @classmethod
    def from_file(cls, path, keyword=None):
        """Every section whose keyword names an element pair, or one section for all pairs."""
        sections = read_lammps_table(path)
        if keyword is not None:
            if keyword not in sections:
                raise ParameterError(f"{path}: no section {keyword!r} (it has "
                                     f"{', '.join(sections)})")
            r, e, _ = sections[keyword]
            return cls({"*": (r, e)}, source=f"{path} {keyword}")
        tables = {}
        for key, (r, e, _) in sections.items():
            pair = _pair_of(key)
            if pair is None:
                raise ParameterError(f"{path}: section {key!r} does not name two elements "
                                     f"(use Si-Si, Si-O, ...; or --baseline \"table FILE "
                                     f"keyword={key}\" for every pair)")
            tables[pair] = (r, e)
        return cls(tables, source=str(path))

    def _lookup(self, z1, z2):
        key = (min(z1, z2), max(z1, z2))
        if key in self._splines:
            return key
        return "*" if "*" in self._splines else None

    def to_dict(self):
        return {"kind": self.kind, "source": self.source,
                "pairs": [list(k) if k != "*" else "*" for k in self.tables]}

    def arrays(self):
        out = {}
        for k, key in enumerate(self.tables):
            r, e = self.tables[key]
            out[f"r_{k}"], out[f"energy_{k}"] = r, e
        return out

    @classmethod
    def from_arrays(cls, data, arrays):
        tables = {}
        for k, pair in enumerate(data.get("pairs", [])):
            key = "*" if pair == "*" else tuple(int(z) for z in pair)
            tables[key] = (np.asarray(arrays[f"r_{k}"]), np.asarray(arrays[f"energy_{k}"]))
        return cls(tables, source=data.get("source", ""))

    def max_cutoff(self, species):
        rc = [self.tables[key][0][-1] for a in species for b in species
              if (key := self._lookup(int(a), int(b))) is not None]
        return max(rc, default=0.0)

    def pair_energy(self, r, z1, z2):
        key = self._lookup(z1, z2)
        v, dv = np.zeros_like(r), np.zeros_like(r)
        if key is None:
            return v, dv
        (spline, dspline), (grid, _) = self._splines[key], self.tables[key]
        inside = (r >= grid[0]) & (r < grid[-1])
        v[inside], dv[inside] = spline(r[inside]), dspline(r[inside])
        below = r < grid[0]
        if below.any():
            v0, d0 = spline(grid[0]), dspline(grid[0])
            v[below], dv[below] = v0 + d0 * (r[below] - grid[0]), d0
        return v, dv
