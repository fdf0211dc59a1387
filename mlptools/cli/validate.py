"""``mlptools validate``: errors on labelled data and physical properties against a reference."""

import click

from mlptools.cli import _common as c


def _positive(ctx, param, value):
    if value is not None and value < 0:
        raise click.BadParameter("must be ≥ 0")
    return value


def _parse_max_error(ctx, param, values):
    out = {}
    for value in values:
        key, sep, pct = value.partition("=")
        try:
            out[key.strip()] = float(pct)
        except ValueError:
            sep = ""
        if not sep or not key.strip() or out.get(key.strip(), -1) < 0:
            raise click.BadParameter(f"expected PROPERTY=PERCENT (e.g. a=0.5, C44=5), got "
                                     f"{value!r}")
    return out


def _threshold(name, unit, what):
    return click.option(name, type=float, default=None, metavar=unit, callback=_positive,
                        help=f"Fail (exit 3) if {what} exceeds this ({unit}).")


@click.command(short_help="Errors and physical properties of a model.")
@click.argument("model")
@click.argument("data", nargs=-1, type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--properties", metavar="LIST", default=None,
              help="Physical properties to compute: eos,elastic,vacancy,surface,phonon or all.")
@click.option("--reference", metavar="SPEC|VALUES.json", default=None,
              help="Reference for the properties: a model file, a calculator spec (sw, emt, "
                   "tersoff, module.path:Class k=v) or a JSON file of published values "
                   '({"a": 5.431, "B": 101.4, "C11": 151.4, ...} in the units of the table).')
@click.option("--element", metavar="SYMBOL", help="Element of the crystal (with --lattice).")
@click.option("--lattice", metavar="NAME",
              help="Crystal structure: diamond, fcc, bcc, hcp, sc, ...")
@click.option("--a", "lattice_a", type=click.FloatRange(min=0, min_open=True), metavar="Å",
              help="Starting lattice constant (Å; ASE's reference value by default).")
@click.option("--structure", type=click.Path(dir_okay=False), metavar="FILE",
              help="Crystal from a file instead (first frame, periodic), e.g. a conventional cell.")
@click.option("--phonon-supercell", type=click.IntRange(1), default=4, show_default=True,
              help="n of the n×n×n supercell of the primitive cell for phonons.")
@click.option("--vacancy-size", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, metavar="Å", help="Minimum width of the vacancy supercell (Å).")
@click.option("--format", "fmt", type=click.Choice(["text", "tsv", "json"]), default="text",
              show_default=True, help="Format of the tables on stdout.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write everything (tables, E–V points, Cij, bands) as JSON.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), metavar="FILE.md",
              help="Write a markdown report (tables and plot links).")
@click.option("--plot-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Write parity plots (energy, forces, stress), E–V and phonon plots (PNG).")
@click.option("--predictions", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write DATA with the predictions under mlptools_energy/forces/stress (extxyz).")
@click.option("--shift-energies", is_flag=True,
              help="Remove the mean energy offset per atom (eV/atom, reported) before the "
                   "energy errors: for potentials with another energy zero than DATA.")
@c.require_option()
@c.min_distance_option()
@_threshold("--max-energy-rmse", "meV/atom", "the overall energy RMSE")
@_threshold("--max-force-rmse", "eV/Å", "the overall force-component RMSE")
@_threshold("--max-stress-rmse", "GPa", "the overall stress-component RMSE")
@_threshold("--max-property-error", "%", "any property's |error| relative to the reference")
@click.option("--max-error", "max_errors", multiple=True, callback=_parse_max_error,
              metavar="KEY=%", help="Fail (exit 3) if this property's |error| relative to the "
              "reference exceeds this (%), e.g. a=0.5 C44=5 gamma_111=5 (repeatable).")
@c.seed_option(required=False)
@c.verbosity_options
def validate(model, data, properties, reference, element, lattice, lattice_a, structure,
             phonon_supercell, vacancy_size, fmt, json_path, report_path, plot_dir, predictions,
             shift_energies, require, min_distance, max_energy_rmse, max_force_rmse,
             max_stress_rmse, max_property_error, max_errors, seed):
    """Validate a potential: errors on labelled DATA and crystal properties.

    MODEL is a model file or any calculator spec (sw, emt, tersoff, xtb, module.path:Class k=v),
    so two potentials can be compared. On DATA (extxyz, '-' = stdin, or any format ASE reads) the
    RMSE and MAE of energy (meV/atom), forces (eV/Å; also per component and relative) and stress
    (GPa) are reported per config_type and overall, against the labels in DATA.

    --properties computes, for the crystal given by --element/--lattice or --structure, the
    relaxed lattice constant and energy, the E–V curve and bulk modulus (Birch–Murnaghan), the
    elastic constants (finite strains, relaxed ions; C11, C12, C44 for cubic crystals), the
    relaxed vacancy formation energy, relaxed (100), (110), (111) surface energies and phonon
    frequencies at Γ and the zone boundary, side by side with --reference and the signed error.
    Under 'mpirun -n N' the property calculations are shared between the ranks (needs mpi4py).
    Exit status 3 when a --max-* check fails (all outputs are still written).

    \b
    Examples:
      mlptools validate model.h5 test.xyz --plot-dir plots --report report.md
      mlptools validate model.h5 --properties all --element Si --lattice diamond --reference sw
      mlptools validate tersoff --properties eos,elastic --element Si --lattice diamond \\
          --reference sw
      mlptools validate model.h5 test.xyz --max-force-rmse 0.1
    """
    import signal
    import types

    from mlptools.workflows import properties as props

    for key in max_errors:
        props.property_info(key)  # an unknown property is an error before any work
    if not data and not properties:
        raise click.UsageError("give DATA files and/or --properties")
    if properties:
        groups = props.parse_properties(properties)
        if structure is None and not (element and lattice):
            raise click.UsageError("--properties needs --element and --lattice, or --structure")
        if structure is not None and (element or lattice):
            raise click.UsageError("give either --structure or --element/--lattice, not both")
    if reference is not None and not properties:
        c.log.warning("--reference is used for --properties only; the errors on DATA are "
                      "against its labels")
    comm = c.mpi_comm()
    rank = comm.Get_rank() if comm is not None else 0
    if comm is not None and "-" in data:
        raise click.UsageError("under mpirun, give DATA as files (stdin reaches rank 0 only)")
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        options = types.SimpleNamespace(**click.get_current_context().params)
        _validate(options, groups if properties else (), comm, rank)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum, frame):
    from mlptools.errors import Terminated

    # nothing is written before the end (outputs are atomic), so stopping loses only time
    raise Terminated("stopped by SIGTERM; no output written")


def _validate(o, groups, comm, rank):
    """The body of ``validate``: ``o`` holds the command's options by name."""
    import json
    from pathlib import Path

    from mlptools.calculators import calculator_from_argument, check_species_supported
    from mlptools.errors import CheckFailed
    from mlptools.io.extxyz import write_frames
    from mlptools.io.structures import iter_frames
    from mlptools.workflows import properties as props
    from mlptools.workflows import validate as val

    calc = calculator_from_argument(o.model)

    ref_values = ref_calc = None
    if o.reference is not None:
        if o.reference.lower().endswith(".json"):
            ref_values = props.reference_from_dict(_read_json(o.reference), o.reference)
        else:
            ref_calc = calculator_from_argument(o.reference)

    crystal = None
    if o.properties:
        start = None
        if o.structure is not None:
            start = next(iter(iter_frames([o.structure], min_distance=o.min_distance)))
        crystal = props.starting_structure(o.element, o.lattice, a=o.lattice_a, structure=start)
        where = o.structure or f"--element {o.element}"
        check_species_supported(calc, crystal[0].numbers, where)
        if ref_calc is not None:
            check_species_supported(ref_calc, crystal[0].numbers, f"{where} (reference)")

    frames, errors = [], None
    if o.data:
        items = _read_data(o, iter_frames)
        frames = val.predict_frames(items, calc, comm=comm)
        errors = val.validation_errors(frames, shift=o.shift_energies)
        if errors.energy_offset is not None and rank == 0:
            c.log.warning("energies shifted by %+.4f eV/atom (mean offset of the predictions)",
                          -errors.energy_offset)

    comparison = None
    if o.properties:
        settings = props.PropertySettings(phonon_supercell=o.phonon_supercell,
                                          vacancy_min_length=o.vacancy_size, seed=o.seed or 0)
        comparison = props.validate_properties(
            calc, *crystal, groups, reference=ref_values or ref_calc, settings=settings,
            comm=comm, model_name=o.model, reference_name=o.reference or "reference")
    if rank != 0:
        return

    plots = (_write_plots(Path(o.plot_dir), frames, comparison, o.model, o.reference)
             if o.plot_dir else [])
    result = {"model": o.model, "reference": o.reference, "data": list(o.data),
              "errors": errors.to_dict() if errors else None,
              "properties": comparison.to_dict() if comparison else None}
    if o.predictions:
        write_frames(frames, o.predictions)
    if o.json_path:
        with c.open_text_output(o.json_path) as fh:
            json.dump(_jsonable(result), fh, indent=1, ensure_ascii=False)
            fh.write("\n")
    if o.report_path:
        with c.open_text_output(o.report_path) as fh:
            fh.write(_markdown(result, errors, comparison, plots, Path(o.report_path).parent))
    with c.open_text_output("-") as out:
        if o.fmt == "json":
            out.write(json.dumps(_jsonable(result), ensure_ascii=False) + "\n")
        else:
            if errors:
                out.write(errors.report.to_tsv() if o.fmt == "tsv" else
                          errors.report.to_text() + "\n" + errors.forces_text())
            if comparison:
                out.write(("\n" if errors else "") + (
                    _rows_tsv(comparison.rows) if o.fmt == "tsv" else props.properties_table(
                        comparison.rows, model_name=o.model, reference_name=o.reference or "-")))
    failed = val.check_thresholds(errors, comparison.rows if comparison else (),
                                  max_energy_rmse=o.max_energy_rmse,
                                  max_force_rmse=o.max_force_rmse,
                                  max_stress_rmse=o.max_stress_rmse,
                                  max_property_error=o.max_property_error,
                                  max_errors=o.max_errors)
    if (o.max_property_error is not None or o.max_errors) and (
            comparison is None or comparison.reference is None):
        failed.append("property checks: no --properties with a --reference to compare")
    if failed:
        raise CheckFailed("check failed: " + "; ".join(failed))


def _read_data(o, iter_frames):
    """``(where, atoms)`` of every DATA frame.

    Under MPI every rank reads: ASE's readers are collective there (rank 0 reads, including
    stdin, and broadcasts), so the ranks must call them in step.
    """
    return [(f"{source}: frame {index}", atoms) for source in o.data
            for index, atoms in enumerate(iter_frames([source], require=o.require,
                                                      min_distance=o.min_distance))]


def _read_json(path):
    import json

    from mlptools.errors import InputError

    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def _jsonable(obj):
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _rows_tsv(rows):
    lines = ["property\tunit\tmodel\treference\terror\terror_percent"]
    for r in rows:
        lines.append("\t".join([r.key, r.unit, f"{r.model:.6g}"] + [
            "nan" if v is None else f"{v:.6g}" for v in (r.reference, r.error, r.error_percent)]))
    return "\n".join(lines) + "\n"


def _write_plots(directory, frames, comparison, model, reference):
    from mlptools.io import plots
    from mlptools.workflows import validate as val

    directory.mkdir(parents=True, exist_ok=True)
    written = plots.parity_plots(val.parity_data(frames), directory) if frames else []
    if comparison is None:
        return written
    sides = [(f"model {model}", comparison.model)]
    if comparison.reference is not None and comparison.reference.details.get("eos"):
        sides.append((f"reference {reference}", comparison.reference))
    for name, plot in (("eos", plots.eos_plot), ("phonon", plots.phonon_plot)):
        if name in comparison.model.details:
            written.append(plot([(label, p.details[name]) for label, p in sides
                                 if name in p.details], directory / f"{name}.png"))
    return written


def _markdown(result, errors, comparison, plots, base):
    import os

    from mlptools.workflows import properties as props

    lines = [f"# Validation of `{result['model']}`", ""]
    if errors:
        lines += [f"Data: {', '.join(f'`{d}`' for d in result['data'])}", "",
                  "## Errors per config type", "", "```", errors.report.to_text().rstrip(), "```",
                  "", "## Force errors per component", "", "```", errors.forces_text().rstrip(),
                  "```", ""]
    if comparison:
        ref = result["reference"] or "none"
        lines += [f"## Properties (reference: `{ref}`)", "",
                  props.properties_table(comparison.rows, markdown=True,
                                         model_name=result["model"],
                                         reference_name=result["reference"] or "-").rstrip(),
                  ""]
        s = comparison.model.details
        notes = []
        if "vacancy" in s:
            notes.append(f"vacancy: {s['vacancy']['atoms']}-atom supercell, constant volume")
        for label, d in s.get("surface", {}).items():
            notes.append(f"surface ({label}): {d['atoms']}-atom slab, {d['thickness']:.1f} Å "
                         f"thick, face {d['area']:.1f} Å², relaxed from the bulk cut (no "
                         "reconstruction search)")
        if "phonon" in s:
            n = s["phonon"]["supercell"]
            notes.append(f"phonons: finite displacements in a {n}×{n}×{n} primitive supercell")
        lines += [f"- {n}" for n in notes] + [""]
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{p.stem}]({os.path.relpath(p, base)})" for p in plots]
        lines.append("")
    return "\n".join(lines)
