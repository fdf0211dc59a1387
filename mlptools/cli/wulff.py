"""``mlptools wulff``: surface energies and the Wulff shape of a nanoparticle."""

import sys

import click

from mlptools.cli import _common as c


@click.command(short_help="Surface energies and Wulff nanoparticle.")
@click.argument("model", required=False)
@click.option("--element", required=True, help="Chemical symbol, e.g. Au.")
@click.option("--lattice", required=True, help="Crystal lattice: fcc, bcc, sc or hcp.")
@click.option("--a", "a", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Lattice constant (Å) [default: relaxed with MODEL; ASE's reference value "
                   "when only --energies is given].")
@click.option("--c", "c_", type=click.FloatRange(min=0, min_open=True), default=None,
              help="hcp c (Å) [default: relaxed with MODEL, or ideal √(8/3)·a].")
@click.option("--facets", default=None,
              help="Facet families, Miller indices of the conventional cell: 100,110,111 "
                   "(1-10 for negative, '2 1 0' style for indices > 9; hcp also hkil: "
                   "0001,10-10) [default: those of --energies].")
@click.option("--energies", "energies_file", type=click.Path(dir_okay=False), default=None,
              help="Take surface energies from FILE (lines 'FACET GAMMA', γ in J/m², # comments) "
                   "instead of computing them.")
@click.option("--size", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Atoms of the atomistic particle (about: symmetric shells stay whole).")
@click.option("-o", "--output", type=click.Path(allow_dash=True, dir_okay=False), default=None,
              help="Write the particle (extxyz, written atomically; '-' = stdout, and the table "
                   "then goes to stderr).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Draw the shape to this PNG (needs matplotlib).")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=0.002,
              show_default=True,
              help="Slab thickness convergence: successive γ within this (J/m²).")
@click.option("--max-layers", type=click.IntRange(min=3), default=12, show_default=True,
              help="Thickest slab tried (repeats of the surface cell).")
@click.option("--vacuum", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, help="Vacuum on each side of a slab (Å).")
@click.option("--fmax", type=click.FloatRange(min=0, min_open=True), default=0.005,
              show_default=True, help="Force tolerance of the slab relaxations (eV/Å).")
@c.verbosity_options
def wulff(model, element, lattice, a, c_, facets, energies_file, size, output, plot, tol,
          max_layers, vacuum, fmax):
    """Relaxed surface energies and the equilibrium (Wulff) particle shape.

    MODEL is a fitted model file or a calculator spec (emt, sw, ...). The bulk is relaxed with
    it (unless --a is given), and each facet's slab is relaxed with thickness increased until
    γ = (E_slab − N e_bulk)/(2A) converges; or γ are read from --energies. The Wulff shape is
    the intersection of the half-spaces n·x ≤ γ(n) over all symmetry-equivalent normals
    (m-3m for cubic lattices, 6/mmm for hcp). stdout gets a table of each facet's γ (J/m² and
    eV/Å²), slab thickness and area fraction, the area-weighted mean γ, the shape factor
    A/V^(2/3) and the surface energy (eV) of a particle of --size atoms, which is written to
    OUTPUT (cut from the crystal by the same half-spaces).

    \b
    Examples:
      mlptools wulff emt --element Au --lattice fcc --facets 100,110,111 -o au.xyz --plot au.png
      mlptools wulff --element Au --lattice fcc --energies gamma.txt --size 5000 -o au.xyz
    """
    from ase.data import atomic_numbers

    from mlptools.calculators import calculator_from_argument, check_species_supported
    from mlptools.errors import ParameterError
    from mlptools.io.extxyz import write_frames
    from mlptools.workflows import wulff as wf

    lattice = lattice.strip().lower()
    if lattice not in wf.LATTICES:
        raise ParameterError(f"unknown lattice {lattice!r}; use one of {', '.join(wf.LATTICES)}")
    if element not in atomic_numbers:
        raise ParameterError(f"unknown element {element!r}")
    if model is None and energies_file is None:
        raise click.UsageError("give a MODEL to compute surface energies, or --energies FILE")
    given = wf.read_surface_energies(energies_file, lattice) if energies_file else None
    facet_list = wf.parse_facets(facets, lattice) if facets else list(given)
    if given is not None:
        missing = [f for f in facet_list if f not in given]
        if missing:
            raise ParameterError(f"{energies_file}: no surface energy for "
                                 f"({wf.facet_label(missing[0])})")
    bulk = wf.bulk_crystal(element, lattice, a=a, c=c_)
    wf.check_closed(facet_list, lattice, bulk.cell)  # before any slab is computed
    calc = None
    if model is not None:
        calc = calculator_from_argument(model)
        check_species_supported(calc, [atomic_numbers[element]], model)
    e_bulk = None
    how = "given" if a is not None else "ASE reference"
    if calc is not None and (given is None or a is None):
        if a is None:
            bulk, e_bulk = wf.relax_bulk(bulk, calc)
            how = f"relaxed with {model}"
        else:
            bulk.calc = calc
            e_bulk = float(bulk.get_potential_energy()) / len(bulk)
            bulk.calc = None
    rows = {}
    if given is not None:
        gammas = {f: given[f] for f in facet_list}
    else:
        for f in facet_list:
            rows[f] = wf.surface_energy(bulk, e_bulk, calc, f, tol=tol, max_layers=max_layers,
                                        vacuum=vacuum, fmax=fmax)
        gammas = {f: r.gamma for f, r in rows.items()}
    shape = wf.wulff_shape(gammas, lattice, bulk.cell)
    particle = wf.wulff_particle(shape, bulk, size)
    particle.info.update(element=element, lattice=lattice, a=float(bulk.cell.lengths()[0]))

    table = sys.stderr if output == "-" else sys.stdout
    lengths = bulk.cell.cellpar()
    lat = f"a = {lengths[0]:.4f} Å" + (f", c = {lengths[2]:.4f} Å" if lattice == "hcp" else "")
    lines = [f"# {element} {lattice}, {lat} ({how})"
             + (f", e_bulk = {e_bulk:.5f} eV/atom" if e_bulk is not None else "")]
    lines.append(f"{'facet':<8} {'gamma_J/m2':>11} {'gamma_eV/A2':>12} {'layers':>6} "
                 f"{'atoms':>6} {'thick_A':>8} {'converged':>9} {'area_frac':>10}")
    fractions = shape.area_fractions
    for f in facet_list:
        r = rows.get(f)
        slab = (f"{r.layers:>6d} {r.n_atoms:>6d} {r.thickness:>8.2f} "
                f"{'yes' if r.converged else 'NO':>9}") if r else f"{'-':>6} {'-':>6} " \
                                                                  f"{'-':>8} {'-':>9}"
        lines.append(f"{'{' + wf.facet_label(f) + '}':<8} "
                     f"{gammas[f] * wf.EV_PER_A2_IN_J_PER_M2:>11.5f} {gammas[f]:>12.6f} {slab} "
                     f"{fractions[f]:>10.6f}")
    volume = len(particle) * bulk.get_volume() / len(bulk)
    lines.append(f"# mean surface energy {shape.mean_surface_energy * wf.EV_PER_A2_IN_J_PER_M2:.5f}"
                 f" J/m² ({shape.mean_surface_energy:.6f} eV/Å²); shape factor A/V^(2/3) = "
                 f"{shape.shape_factor:.4f}")
    lines.append(f"# particle: {len(particle)} atoms; surface energy of the shape of its volume "
                 f"({volume:.0f} Å³): {shape.surface_energy_at_volume(volume):.3f} eV")
    if plot:
        wf.plot_shape(shape, plot, title=f"{element} {lattice}")
    if output is not None:
        write_frames([particle], output)
    for line in lines:
        click.echo(line, file=table)
