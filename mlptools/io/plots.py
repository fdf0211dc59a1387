"""PNG figures of ``validate``: parity plots, E–V curves and phonon bands (matplotlib, Agg).

Every figure is written atomically (a finished PNG or none). matplotlib is imported inside the
functions so that ``import mlptools`` stays light.
"""

import numpy as np

from mlptools.io.atomic import atomic_path

__all__ = ["eos_plot", "parity_plots", "phonon_plot"]

_UNITS = {"energy": "eV/atom", "forces": "eV/Å", "stress": "GPa"}
_TITLES = {"energy": "Energy", "forces": "Force components", "stress": "Stress components"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def parity_plots(data, directory, prefix=""):
    """One parity plot per quantity (reference on x, prediction on y), coloured by config type.

    Parameters
    ----------
    data : dict
        :func:`mlptools.workflows.validate.parity_data`.
    directory : pathlib.Path, existing

    Returns
    -------
    list of pathlib.Path
        The files written (``energy.png``, ``forces.png``, ``stress.png`` where there is data).
    """
    plt = _pyplot()
    written = []
    for name, groups in data.items():
        if not groups:
            continue
        fig, ax = plt.subplots(figsize=(5, 5))
        lo, hi = np.inf, -np.inf
        for ct, (ref, pred) in sorted(groups.items()):
            rmse = float(np.sqrt(np.mean((pred - ref) ** 2)))
            shown = f"{1000 * rmse:.3g} meV/atom" if name == "energy" else \
                f"{rmse:.3g} {_UNITS[name]}"
            ax.scatter(ref, pred, s=6, alpha=0.6, label=f"{ct} (RMSE {shown})")
            lo, hi = min(lo, ref.min(), pred.min()), max(hi, ref.max(), pred.max())
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=0.8)
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel(f"reference ({_UNITS[name]})")
        ax.set_ylabel(f"prediction ({_UNITS[name]})")
        ax.set_title(_TITLES[name])
        ax.legend(fontsize=7, markerscale=2)
        fig.tight_layout()
        path = directory / f"{prefix}{name}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def eos_plot(sides, path):
    """E–V points and Birch–Murnaghan curves of each side (``[(label, details["eos"]), ...]``)."""
    from mlptools.units import GPA_TO_EV_PER_A3
    from mlptools.workflows.properties import birch_murnaghan

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, eos in sides:
        v = np.asarray(eos["volumes"])
        grid = np.linspace(v.min(), v.max(), 200)
        curve = birch_murnaghan(grid, eos["E0"], eos["V0"], eos["B"] * GPA_TO_EV_PER_A3,
                                eos["B'"])
        line, = ax.plot(grid, curve, label=f"{label}: B = {eos['B']:.1f} GPa")
        ax.plot(v, eos["energies"], "o", color=line.get_color(), ms=4)
    ax.set_xlabel("volume (Å³/atom)")
    ax.set_ylabel("energy (eV/atom)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def phonon_plot(sides, path):
    """Phonon bands along ASE's standard path and the DOS, each side in its own colour.

    ``sides`` is ``[(label, details["phonon"]), ...]``; the path of the first side labels the
    axis (the sides share the lattice).
    """
    plt = _pyplot()
    fig, (ax, ax_dos) = plt.subplots(1, 2, figsize=(8, 4), sharey=True,
                                     gridspec_kw={"width_ratios": [3, 1]})
    first = sides[0][1]["path"]
    for k, (label, ph) in enumerate(sides):
        style = {"color": f"C{k}", "lw": 1, "ls": "-" if k == 0 else "--"}
        x = np.asarray(ph["path"]["x"]) / max(ph["path"]["x"][-1], 1e-12) * first["x"][-1]
        bands = np.asarray(ph["bands"])
        for b in range(bands.shape[1]):
            ax.plot(x, bands[:, b], label=label if b == 0 else None, **style)
        ax_dos.plot(ph["dos"]["density"], ph["dos"]["frequency"], **style)
    for xs in first["special_x"]:
        ax.axvline(xs, color="0.7", lw=0.5)
    ax.set_xticks(first["special_x"])
    ax.set_xticklabels(["Γ" if s == "G" else s for s in first["labels"]])
    ax.set_xlim(first["x"][0], first["x"][-1])
    ax.set_ylabel("frequency (THz)")
    ax.legend(fontsize=8)
    ax_dos.set_xlabel("DOS")
    ax_dos.set_xticks([])
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path
