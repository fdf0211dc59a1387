"""Choice of sparse (representative) points for GAP: CUR leverage sampling and farthest points.

Index letters: ``n`` candidate rows (atoms), ``f`` features, ``m`` chosen points.
Both functions return sorted, distinct row indices into ``X_nf``.
"""

import numpy as np

from mlptools.errors import ParameterError

METHODS = ("cur", "fps")


def cur_rows(X_nf, n_select, *, rng, rank=None):
    """Rows sampled without replacement with probability ∝ their statistical leverage.

    The leverage of row i is Σ_{k<rank} U_ik² for the thin SVD X = U S Vᵀ (Mahoney & Drineas
    2009, the ``cur_points`` choice of gap_fit); ``rank`` defaults to all singular values above
    1e-10 of the largest.
    """
    n = X_nf.shape[0]
    if n_select >= n:
        return np.arange(n)
    U, s, _ = np.linalg.svd(X_nf, full_matrices=False)
    if rank is None:
        rank = int(np.count_nonzero(s > 1e-10 * (s[0] if s.size else 0.0)))
    lev = np.sum(U[:, :max(rank, 1)] ** 2, axis=1) + 1e-12
    chosen = rng.choice(n, size=n_select, replace=False, p=lev / lev.sum())
    return np.sort(chosen)


def fps_rows(X_nf, n_select, *, rng, zeta=1.0):
    """Greedy farthest-point sampling in the kernel distance d² = k(a,a) + k(b,b) − 2k(a,b),
    k = (x_a·x_b)^ζ, starting from a random row (``rng``)."""
    n = X_nf.shape[0]
    if n_select >= n:
        return np.arange(n)
    diag = np.einsum("nf,nf->n", X_nf, X_nf) ** zeta
    first = int(rng.integers(n))
    chosen = [first]
    dist = diag + diag[first] - 2.0 * (X_nf @ X_nf[first]) ** zeta
    for _ in range(n_select - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        d_new = diag + diag[nxt] - 2.0 * (X_nf @ X_nf[nxt]) ** zeta
        np.minimum(dist, d_new, out=dist)
        dist[nxt] = -np.inf
    return np.sort(np.array(chosen))


def farthest_point_order(candidates, known, count):
    """Greedy farthest-point sampling: indices of ``count`` rows of ``candidates``.

    Each pick is the candidate whose Euclidean distance to the nearest row of ``known`` and of
    the rows already picked is largest.

    Parameters
    ----------
    candidates : (n, f) float64
    known : (k, f) float64, may be empty (the first pick is then row 0's farthest partner)
    count : int
    """
    candidates = np.asarray(candidates, dtype=np.float64)
    count = min(int(count), len(candidates))
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if len(known):
        d = np.min(np.linalg.norm(candidates[:, None, :] - np.asarray(known)[None], axis=2), axis=1)
    else:
        d = np.linalg.norm(candidates - candidates[0], axis=1)
    picked = []
    for _ in range(count):
        k = int(np.argmax(d))
        picked.append(k)
        d = np.minimum(d, np.linalg.norm(candidates - candidates[k], axis=1))
        d[picked] = -np.inf
    return np.asarray(picked, dtype=np.int64)


def select_rows(X_nf, n_select, method, *, rng, zeta=1.0):
    """Dispatch on ``method`` ("cur" or "fps"); duplicates rows of X are dropped first."""
    if method not in METHODS:
        raise ParameterError(f"sparse method must be one of {', '.join(METHODS)}, got {method!r}")
    # identical environments (a perfect crystal) would make K_mm singular: keep one of each
    _, first = np.unique(np.round(X_nf, 10), axis=0, return_index=True)
    first = np.sort(first)
    Xu = X_nf[first]
    if method == "cur":
        sub = cur_rows(Xu, n_select, rng=rng)
    else:
        sub = fps_rows(Xu, n_select, rng=rng, zeta=zeta)
    return first[sub]
