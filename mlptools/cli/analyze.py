"""``mlptools analyze``: g(r), coordination, bond angles, rings and density of structures."""

import json

import click

from mlptools.cli import _common as c


def analysis_options(f):
    """--cutoff, --r-max, --bin-width, --max-ring, --no-rings, --json, --plot (also quench's)."""
    options = [
        click.option("--cutoff", "cutoff_A", type=click.FloatRange(0, min_open=True),
                     default=None, help="Bond cutoff for coordination, angles and rings (Å) "
                     "[default: 2.85 for Si, 1.85 for C, else 1.2 × twice the covalent radius]."),
        click.option("--r-max", "r_max_A", type=click.FloatRange(0, min_open=True),
                     default=None, help="Range of g(r) (Å) [default: 10 or half the cell]."),
        click.option("--bin-width", "bin_width_A", type=click.FloatRange(0, min_open=True),
                     default=0.02, show_default=True, help="Bin width of g(r) (Å)."),
        click.option("--max-ring", type=click.IntRange(3, 14), default=10, show_default=True,
                     help="Largest shortest-path ring counted (atoms)."),
        click.option("--no-rings", is_flag=True, help="Skip the ring statistics (the slow part)."),
        click.option("--json", "json_path", type=click.Path(allow_dash=True, dir_okay=False),
                     default=None, help="Write the numbers and curves as JSON ('-' = stdout)."),
        click.option("--plot", "plot_prefix", metavar="PREFIX", default=None,
                     help="Write PREFIX-rdf.png, -coordination.png, -angles.png, -rings.png."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def run_analysis(frames, *, cutoff_A, r_max_A, bin_width_A, max_ring, no_rings, json_path,
                 plot_prefix, summary_to_stderr=False):
    """Analyse, then print the summary (stdout, or stderr when stdout carries data) and write
    the JSON and plots."""
    from mlptools.analysis.structure import analyze_structures

    analysis = analyze_structures(frames, cutoff=cutoff_A, r_max=r_max_A, bin_width=bin_width_A,
                                  max_ring_size=max_ring, rings=not no_rings)
    if json_path is not None:
        with c.open_text_output(json_path) as fh:
            json.dump(analysis.to_dict(), fh, indent=1)
            fh.write("\n")
    if plot_prefix:
        from mlptools.analysis.plots import plot_analysis

        plot_analysis(analysis, plot_prefix)
    if json_path != "-" and not (summary_to_stderr and c.quiet()):
        for line in analysis.lines():
            click.echo(line, err=summary_to_stderr)
    return analysis


@click.command(short_help="Structure analysis: g(r), CN, angles, rings.")
@c.inputs(required=False)
@click.option("--index", default=":", show_default=True,
              help="Frames to analyse, a Python slice or index ('-1' the last, '::10').")
@analysis_options
@c.verbosity_options
def analyze(inputs, index, cutoff_A, r_max_A, bin_width_A, max_ring, no_rings, json_path,
            plot_prefix):
    """Analyse structures or a trajectory: g(r), coordination, bond angles, rings, density.

    Numbers are averaged over the selected frames of all inputs: radial distribution function
    g(r) (periodic cells; normalised so that an ideal gas gives 1), coordination-number
    distribution at the bond cutoff, bond-angle distribution, shortest-path ring statistics
    (Franzblau) and the mass density (g/cm³). The summary goes to stdout, the curves to --json.

    \b
    Examples:
      mlptools analyze a-si.xyz --json a-si.json --plot a-si
      mlptools analyze md.xyz --index '::10' --no-rings
    """
    from mlptools.errors import ParameterError
    from mlptools.io.structures import iter_frames

    frames = list(iter_frames(list(inputs) or ["-"], min_distance=0.0))
    try:
        if ":" in index:
            parts = [int(p) if p.strip() else None for p in index.split(":")]
            frames = frames[slice(*parts)]
        else:
            frames = [frames[int(index)]]
    except (ValueError, IndexError, TypeError):
        raise ParameterError(f"--index {index!r}: not a frame index or slice of the "
                             f"{len(frames)} frames") from None
    if not frames:
        raise ParameterError(f"--index {index!r} selects no frames")
    run_analysis(frames, cutoff_A=cutoff_A, r_max_A=r_max_A, bin_width_A=bin_width_A,
                 max_ring=max_ring, no_rings=no_rings, json_path=json_path,
                 plot_prefix=plot_prefix)
