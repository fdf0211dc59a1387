"""PNG plots of a :class:`~mlptools.analysis.structure.StructureAnalysis` (matplotlib, Agg)."""

from __future__ import annotations

from mlptools.errors import ParameterError


def plot_analysis(analysis, prefix):
    """Write ``PREFIX-rdf.png``, ``PREFIX-coordination.png``, ``PREFIX-angles.png`` and (with
    rings) ``PREFIX-rings.png``, each atomically; returns the paths written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ParameterError("plots need matplotlib: pip install 'mlptools[plots]'") from None
    from mlptools.io.atomic import atomic_path

    written = []

    def save(fig, name):
        path = f"{prefix}-{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(path)

    if analysis.rdf is not None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(analysis.rdf.r, analysis.rdf.g, lw=1.2)
        ax.axhline(1.0, color="0.6", lw=0.8, ls="--")
        ax.axvline(analysis.cutoff_A, color="C3", lw=0.8, ls=":", label="bond cutoff")
        ax.set(xlabel="r (Å)", ylabel="g(r)", title=f"first peak {analysis.rdf.first_peak_A:.3f} Å")
        ax.legend(frameon=False)
        save(fig, "rdf")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ks = list(analysis.coordination)
    ax.bar(ks, [100 * analysis.coordination[k] for k in ks])
    ax.set(xlabel=f"coordination number (cutoff {analysis.cutoff_A:g} Å)", ylabel="atoms (%)")
    save(fig, "coordination")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    centres = 0.5 * (analysis.angles_edges_deg[1:] + analysis.angles_edges_deg[:-1])
    ax.plot(centres, analysis.angles_density, lw=1.2)
    ax.axvline(109.47, color="0.6", lw=0.8, ls="--", label="tetrahedral")
    ax.set(xlabel="bond angle (°)", ylabel="probability density (1/°)")
    ax.legend(frameon=False)
    save(fig, "angles")
    if analysis.rings_per_atom:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        sizes = list(analysis.rings_per_atom)
        ax.bar(sizes, [analysis.rings_per_atom[k] for k in sizes])
        ax.set(xlabel="ring size (shortest-path rings)", ylabel="rings per atom")
        save(fig, "rings")
    return written
