"""Structural analysis of (amorphous) structures: g(r), coordination, bond angles, rings, density.

Library half of ``mlptools analyze`` and of the report of ``mlptools quench``. Every function takes
a list of ``ase.Atoms`` (one structure or the frames of a trajectory) and averages over them.

- Radial distribution function, periodic cells only:
  g(r) = V / (N (N − 1)) · n(r) / (4π r² Δr), with n(r) the number of ordered pairs (i ≠ j,
  all periodic images) at distance r ± Δr/2, so that an ideal gas has g = 1 exactly in
  expectation.
- Coordination number of each atom: neighbours closer than a stated cutoff (2.85 Å is the usual
  choice for Si, the minimum between the first and second shells of a-Si).
- Bond angles j–i–k between pairs of neighbours of each centre i (degrees).
- Ring statistics: shortest-path rings (Franzblau, Phys. Rev. B 44, 4925 (1991)): a closed
  path of the bond graph such that, for every two of its vertices, the shorter way round the
  ring is a shortest path of the whole graph. Rings are traced on the unwrapped periodic graph
  (a node is an atom *and* its cell image), so a path that wraps around the cell is not a ring
  and small cells are handled correctly.

Array suffixes: ``n`` atoms, ``p`` pairs, ``b`` bins.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np

from mlptools.errors import InputError, ParameterError
from mlptools.neighbors import neighbor_list

__all__ = [
    "DEFAULT_CUTOFFS",
    "RadialDistribution",
    "StructureAnalysis",
    "analyze_structures",
    "bond_angle_distribution",
    "coordination_numbers",
    "default_cutoff",
    "density_g_cm3",
    "radial_distribution",
    "ring_statistics",
]

#: bond cutoffs (Å) used when none is given: the g(r) minimum after the first shell
DEFAULT_CUTOFFS = {"Si": 2.85, "C": 1.85, "Ge": 3.0}

_AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660


def default_cutoff(frames):
    """The bond cutoff (Å) for the species present: :data:`DEFAULT_CUTOFFS`, or 1.2 × the sum
    of the two largest covalent radii."""
    from ase.data import chemical_symbols, covalent_radii

    species = sorted({int(z) for a in frames for z in a.numbers})
    if len(species) == 1 and chemical_symbols[species[0]] in DEFAULT_CUTOFFS:
        return DEFAULT_CUTOFFS[chemical_symbols[species[0]]]
    radii = sorted(covalent_radii[species])[-2:]
    return float(1.2 * (radii[0] + radii[-1]))


def density_g_cm3(atoms):
    """Mass density (g/cm³) of a periodic cell."""
    if atoms.cell.rank < 3:
        raise InputError("the density needs a 3-D cell")
    return float(atoms.get_masses().sum() / atoms.get_volume() * _AMU_PER_A3_TO_G_PER_CM3)


def _pairs(atoms, cutoff, quantities="ijdDS"):
    return neighbor_list(quantities, atoms.positions, atoms.cell.array, atoms.pbc, cutoff)


# ---------------------------------------------------------------------------------------------
# g(r)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RadialDistribution:
    """g(r) on bins of width ``r[1] − r[0]`` (Å), bin centres ``r``; ``first_peak_A`` is the
    position of the highest point of g below ``cutoff`` (the first shell): the maximum of a
    3-bin running mean, refined to the highest raw bin next to it."""

    r: np.ndarray
    g: np.ndarray
    first_peak_A: float


def _max_r(frames):
    widths = []
    for atoms in frames:
        cell = atoms.cell.array
        volume = abs(np.linalg.det(cell))
        for k in range(3):
            widths.append(volume / np.linalg.norm(np.cross(cell[k - 2], cell[k - 1])))
    return 0.5 * min(widths)


def radial_distribution(frames, *, r_max=None, bin_width=0.02, cutoff=None):
    """Radial distribution function averaged over periodic ``frames``.

    Parameters
    ----------
    frames : list of ase.Atoms
        Fully periodic cells.
    r_max : float, Å
        Largest distance [default: 10 Å or half the smallest cell width].
    bin_width : float, Å
    cutoff : float, Å
        Bond cutoff bounding the search for the first peak [default: r_max].

    Returns
    -------
    RadialDistribution
    """
    frames = list(frames)
    for atoms in frames:
        if not atoms.pbc.all() or atoms.cell.rank < 3:
            raise InputError("g(r) needs structures periodic in all three directions")
        if len(atoms) < 2:
            raise InputError("g(r) needs at least two atoms")
    if r_max is None:
        r_max = min(10.0, _max_r(frames))
    if not r_max > 0 or not bin_width > 0:
        raise ParameterError("r_max and bin_width must be > 0 Å")
    edges_b = np.arange(0.0, r_max + 0.5 * bin_width, bin_width)
    shell_b = 4.0 / 3.0 * np.pi * (edges_b[1:] ** 3 - edges_b[:-1] ** 3)
    g_b = np.zeros(len(edges_b) - 1)
    for atoms in frames:
        n = len(atoms)
        d_p = _pairs(atoms, edges_b[-1], "d")[0]
        counts_b = np.histogram(d_p, bins=edges_b)[0]
        g_b += counts_b * atoms.get_volume() / (n * (n - 1)) / shell_b
    g_b /= len(frames)
    r_b = 0.5 * (edges_b[1:] + edges_b[:-1])
    smooth_b = np.convolve(g_b, np.ones(3) / 3.0, mode="same")
    inside = np.flatnonzero(r_b < (cutoff if cutoff is not None else r_max))
    peak = math.nan
    if len(inside):
        # the smoothed maximum locates the peak in noisy data; the raw maximum beside it
        # places it to a bin (a crystal's delta-like peak is smeared over 3 smoothed bins)
        k = inside[np.argmax(smooth_b[inside])]
        near = np.arange(max(k - 1, 0), min(k + 2, len(g_b)))
        peak = float(r_b[near[np.argmax(g_b[near])]])
    return RadialDistribution(r=r_b, g=g_b, first_peak_A=peak)


# ---------------------------------------------------------------------------------------------
# coordination and angles
# ---------------------------------------------------------------------------------------------


def coordination_numbers(frames, cutoff):
    """Number of neighbours closer than ``cutoff`` (Å) of every atom of every frame.

    Returns
    -------
    (sum of n_atoms,) int64
    """
    out = []
    for atoms in frames:
        i_p = _pairs(atoms, cutoff, "i")[0]
        out.append(np.bincount(i_p, minlength=len(atoms)))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def bond_angle_distribution(frames, cutoff, *, bin_width=1.0):
    """Angles j–i–k (degrees) between the bonds of each atom i, over all frames.

    Returns
    -------
    angles : (n_triplets,) float64, degrees
    edges : (n_bins + 1,) float64, degrees, bins of ``bin_width`` over [0, 180]
    density : (n_bins,) float64, probability density (1/degree)
    """
    from mlptools.calculators import _triplets

    angles = []
    for atoms in frames:
        i_p, d_p, D_pc = _pairs(atoms, cutoff, "idD")
        order = np.argsort(i_p, kind="stable")
        i_p, d_p, D_pc = i_p[order], d_p[order], D_pc[order]
        p1, p2 = _triplets(i_p, len(atoms))
        u_pc = D_pc / d_p[:, None]
        cos_t = np.clip(np.einsum("tc,tc->t", u_pc[p1], u_pc[p2]), -1.0, 1.0)
        angles.append(np.degrees(np.arccos(cos_t)))
    angles = np.concatenate(angles) if angles else np.zeros(0)
    edges = np.linspace(0.0, 180.0, int(round(180.0 / bin_width)) + 1)
    density = np.histogram(angles, bins=edges, density=len(angles) > 0)[0].astype(float)
    return angles, edges, density


# ---------------------------------------------------------------------------------------------
# rings
# ---------------------------------------------------------------------------------------------


def _bond_graph(atoms, cutoff):
    """adjacency[a] = list of (b, shift) with shift the cell image of b seen from a."""
    i_p, j_p, S_p = _pairs(atoms, cutoff, "ijS")
    adjacency = [[] for _ in range(len(atoms))]
    for i, j, s in zip(i_p.tolist(), j_p.tolist(), S_p.tolist(), strict=True):
        adjacency[i].append((j, s[0], s[1], s[2]))
    return adjacency


def _neighbors_of(node, adjacency):
    a, sx, sy, sz = node
    return [(b, sx + tx, sy + ty, sz + tz) for b, tx, ty, tz in adjacency[a]]


def _bfs(root, adjacency, depth):
    """Distances and shortest-path parents from ``root`` (a node) up to ``depth`` bonds."""
    dist = {root: 0}
    parents = {root: ()}
    frontier = [root]
    for d in range(1, depth + 1):
        nxt = []
        for x in frontier:
            for y in _neighbors_of(x, adjacency):
                seen = dist.get(y)
                if seen is None:
                    dist[y] = d
                    parents[y] = [x]
                    nxt.append(y)
                elif seen == d:
                    parents[y].append(x)
        frontier = nxt
    return dist, parents


def _paths(x, parents, memo):
    """All shortest paths root → x, as tuples of nodes."""
    found = memo.get(x)
    if found is None:
        if not parents[x]:
            found = [(x,)]
        else:
            found = [p + (x,) for parent in parents[x] for p in _paths(parent, parents, memo)]
        memo[x] = found
    return found


def _canonical(ring):
    """The same key for a ring whatever its start, direction and cell image."""
    low = min(node[0] for node in ring)
    keys = []
    for ref in ring:
        if ref[0] != low:
            continue
        _, rx, ry, rz = ref
        keys.append(tuple(sorted((a, x - rx, y - ry, z - rz) for a, x, y, z in ring)))
    return min(keys)


def _is_shortest_path_ring(ring, distances):
    size = len(ring)
    for a in range(size):
        atom_a, ax, ay, az = ring[a]
        dist_a = distances[atom_a]
        for b in range(a + 2, size):
            k = min(b - a, size - b + a)
            if k < 2:
                continue
            atom_b, bx, by, bz = ring[b]
            if dist_a.get((atom_b, bx - ax, by - ay, bz - az), k + 1) < k:
                return False
    return True


def ring_statistics(atoms, cutoff, *, max_size=10):
    """Shortest-path rings (Franzblau) of the bond graph, up to ``max_size`` atoms.

    Parameters
    ----------
    atoms : ase.Atoms
    cutoff : float, Å
        Two atoms are bonded when closer than this.
    max_size : int
        Largest ring searched (3 ≤ max_size); the cost grows ~ 3^(max_size/2) per atom.

    Returns
    -------
    dict of int to int
        ``{ring size: number of distinct rings}`` (sizes with none are left out).
    """
    if max_size < 3:
        raise ParameterError(f"max ring size must be >= 3, got {max_size}")
    adjacency = _bond_graph(atoms, cutoff)
    depth = max_size // 2
    distances = []
    trees = []
    for a in range(len(atoms)):
        dist, parents = _bfs((a, 0, 0, 0), adjacency, depth)
        distances.append({node: d for node, d in dist.items()})
        trees.append((dist, parents))
    rings = set()
    for a in range(len(atoms)):
        dist, parents = trees[a]
        memo = {}
        by_depth = {}
        for node, d in dist.items():
            by_depth.setdefault(d, []).append(node)
        for d in range(1, depth + 1):
            for x in by_depth.get(d, ()):
                # an atom of lower index than the root: the ring is found from that atom
                if x[0] < a:
                    continue
                paths = _paths(x, parents, memo)
                if 2 * d <= max_size and len(paths) > 1:  # even rings: two paths meeting at x
                    for u in range(len(paths)):
                        inner_u = set(paths[u][1:-1])
                        for v in range(u + 1, len(paths)):
                            if inner_u.isdisjoint(paths[v][1:-1]):
                                _add_ring(paths[u] + paths[v][-2:0:-1], a, distances, rings)
                if 2 * d + 1 <= max_size:  # odd rings: paths to the two ends of an edge x–y
                    for y in _neighbors_of(x, adjacency):
                        if dist.get(y) != d or y <= x or y[0] < a:
                            continue
                        for p in paths:
                            tail = set(p[1:])
                            for q in _paths(y, parents, memo):
                                if tail.isdisjoint(q[1:]):
                                    _add_ring(p + q[:0:-1], a, distances, rings)
    counts = Counter(len(r) for r in rings)
    return dict(sorted(counts.items()))


def _add_ring(ring, root_atom, distances, rings):
    if min(node[0] for node in ring) != root_atom:
        return
    if len(set(ring)) != len(ring):
        return
    key = _canonical(ring)
    if key in rings:
        return
    if _is_shortest_path_ring(ring, distances):
        rings.add(key)


# ---------------------------------------------------------------------------------------------
# everything at once
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class StructureAnalysis:
    """The structural report of ``analyze`` and ``quench`` (see :func:`analyze_structures`)."""

    n_frames: int
    n_atoms: int
    cutoff_A: float
    density_g_cm3: float | None
    rdf: RadialDistribution | None
    coordination: dict
    mean_coordination: float
    angles_edges_deg: np.ndarray
    angles_density: np.ndarray
    mean_angle_deg: float
    angle_std_deg: float
    rings: dict | None
    rings_per_atom: dict | None
    max_ring_size: int

    def to_dict(self, with_curves=True):
        """JSON-able numbers (units in the key names); curves as lists when ``with_curves``."""
        out = {
            "frames": self.n_frames,
            "atoms_per_frame": self.n_atoms,
            "cutoff_A": self.cutoff_A,
            "density_g_cm3": self.density_g_cm3,
            "first_peak_A": self.rdf.first_peak_A if self.rdf is not None else None,
            "coordination_fractions": {str(k): v for k, v in self.coordination.items()},
            "mean_coordination": self.mean_coordination,
            "fourfold_fraction": self.coordination.get(4, 0.0),
            "mean_bond_angle_deg": self.mean_angle_deg,
            "bond_angle_std_deg": self.angle_std_deg,
            "max_ring_size": self.max_ring_size,
            "rings": {str(k): v for k, v in self.rings.items()} if self.rings is not None
            else None,
            "rings_per_atom": {str(k): v for k, v in self.rings_per_atom.items()}
            if self.rings_per_atom is not None else None,
        }
        if with_curves:
            if self.rdf is not None:
                out["rdf"] = {"r_A": self.rdf.r.tolist(), "g": self.rdf.g.tolist()}
            centres = 0.5 * (self.angles_edges_deg[1:] + self.angles_edges_deg[:-1])
            out["bond_angles"] = {"angle_deg": centres.tolist(),
                                  "density_per_deg": self.angles_density.tolist()}
        return out

    def lines(self):
        """A short human-readable summary."""
        out = [f"frames {self.n_frames}, atoms per frame {self.n_atoms}, bond cutoff "
               f"{self.cutoff_A:g} Å"]
        if self.density_g_cm3 is not None:
            out.append(f"density {self.density_g_cm3:.4f} g/cm³")
        if self.rdf is not None:
            out.append(f"g(r) first peak {self.rdf.first_peak_A:.3f} Å")
        out.append("coordination " + ", ".join(f"{k}: {100 * v:.1f} %" for k, v in
                                                self.coordination.items())
                   + f" (mean {self.mean_coordination:.3f})")
        out.append(f"bond angle mean {self.mean_angle_deg:.2f}°, std {self.angle_std_deg:.2f}°")
        if self.rings_per_atom is not None:
            out.append(f"shortest-path rings per atom (size ≤ {self.max_ring_size}): " + (", ".join(
                f"{k}: {v:.3f}" for k, v in self.rings_per_atom.items()) or "none"))
        return out


def analyze_structures(frames, *, cutoff=None, r_max=None, bin_width=0.02, max_ring_size=10,
                       rings=True, angle_bin_deg=1.0):
    """g(r), coordination, bond angles, rings and density of ``frames``, averaged over frames.

    Parameters
    ----------
    frames : list of ase.Atoms
    cutoff : float, Å
        Bond cutoff [default: :func:`default_cutoff`, 2.85 Å for Si].
    r_max, bin_width : float, Å
        Range and resolution of g(r) (periodic frames only).
    max_ring_size : int
    rings : bool
        Compute ring statistics (the slowest part).

    Returns
    -------
    StructureAnalysis
    """
    frames = list(frames)
    if not frames:
        raise InputError("no structures to analyse")
    if cutoff is None:
        cutoff = default_cutoff(frames)
    if not cutoff > 0:
        raise ParameterError(f"cutoff must be > 0 Å, got {cutoff}")
    periodic = all(a.pbc.all() and a.cell.rank == 3 for a in frames)
    rdf = radial_distribution(frames, r_max=r_max, bin_width=bin_width, cutoff=cutoff) \
        if periodic else None
    cn = coordination_numbers(frames, cutoff)
    values, counts = np.unique(cn, return_counts=True)
    coordination = {int(v): float(c) / len(cn) for v, c in zip(values, counts, strict=True)}
    angles, edges, density = bond_angle_distribution(frames, cutoff, bin_width=angle_bin_deg)
    ring_counts = per_atom = None
    if rings:
        total = Counter()
        for atoms in frames:
            total.update(ring_statistics(atoms, cutoff, max_size=max_ring_size))
        n_total = sum(len(a) for a in frames)
        ring_counts = {k: total[k] / len(frames) for k in sorted(total)}
        per_atom = {k: total[k] / n_total for k in sorted(total)}
    return StructureAnalysis(
        n_frames=len(frames), n_atoms=len(frames[-1]), cutoff_A=float(cutoff),
        density_g_cm3=float(np.mean([density_g_cm3(a) for a in frames])) if periodic else None,
        rdf=rdf, coordination=coordination, mean_coordination=float(cn.mean()) if len(cn) else 0.0,
        angles_edges_deg=edges, angles_density=density,
        mean_angle_deg=float(angles.mean()) if len(angles) else math.nan,
        angle_std_deg=float(angles.std()) if len(angles) else math.nan,
        rings=ring_counts, rings_per_atom=per_atom, max_ring_size=int(max_ring_size))
