"""``mlptools info``: what is in a structure, descriptor or model file."""

import click

from mlptools.cli import _common as c


@click.command(short_help="Summarise a structure or HDF5 file.")
@click.argument("file", default="-", type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output as readable text or as JSON (for scripts).")
@c.min_distance_option()
@c.verbosity_options
def info(file, fmt, min_distance):
    """Summarise a structure file or an mlptools HDF5 file.

    For structures (extxyz, '-' = extxyz on stdin, any format ASE reads, or an mlptools structure
    database): frames, atoms, species, config types, which labels are present, energy per atom
    (eV/atom), largest force component (eV/Å) and cell volumes (Å³). For descriptor and model
    files: kind, format version, units, hyperparameters, provenance and dataset shapes.

    \b
    Examples:
      mlptools info train.xyz
      cat train.xyz | mlptools info -
      mlptools info --format json si.h5
    """
    import json

    from mlptools.io import extxyz, h5, structures

    summary = header = None
    if file != "-" and h5.is_hdf5(file):
        header = structures.describe_hdf5(file)
        if header["format"] != h5.STRUCTURES_FORMAT:
            summary = {"file": file, "kind": header.pop("format"), **header}
    if summary is None:
        frames = structures.iter_frames(file, min_distance=min_distance)
        summary = {"file": extxyz.display_name(file), "kind": "structures",
                   **structures.summarize(frames)}
        if header is not None:
            summary["header"] = {k: header[k] for k in ("format", "format_version", "units",
                                                         "provenance")}
    with c.open_text_output("-") as out:
        if fmt == "json":
            out.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        else:
            out.write(_text(summary))


def _text(s):
    lines = [f"file:          {s['file']}"]
    if s["kind"] != "structures":
        lines.append(f"kind:          {s['kind']}")
        lines.append(f"version:       {s['format_version']}")
        for key in ("model", "units", "hypers", "provenance"):
            if s.get(key) is not None:
                lines.append(f"{key + ':':<15}{_inline(s[key])}")
        for group, hypers in s.get("group_hypers", {}).items():
            lines.append(f"{'hypers ' + group + ':':<15}{_inline(hypers)}")
        lines.append("datasets:")
        for name, d in s["datasets"].items():
            lines.append(f"  {name:<32} {tuple(d['shape'])} {d['dtype']}")
        return "\n".join(lines) + "\n"
    if "header" in s:
        lines.append(f"kind:          {s['header']['format']} "
                     f"(version {s['header']['format_version']})")
    lo, hi = s["atoms_per_frame"]
    lines += [
        f"frames:        {s['frames']}",
        f"atoms:         {s['atoms']} ({lo}-{hi} per frame)" if lo != hi else
        f"atoms:         {s['atoms']} ({lo} per frame)",
        "species:       " + ", ".join(f"{k} {v}" for k, v in s["species"].items()),
        "config types:  " + ", ".join(f"{k} {v}" for k, v in s["config_types"].items()),
        "labels:        " + ", ".join(f"{k} {v}/{s['frames']}" for k, v in s["labels"].items()),
    ]
    if s["energy_per_atom_eV"]:
        lo, hi = s["energy_per_atom_eV"]
        lines.append(f"energy/atom:   {lo:.4f} to {hi:.4f} eV/atom")
    if s["max_abs_force_eV_per_A"] is not None:
        lines.append(f"max |force|:   {s['max_abs_force_eV_per_A']:.4f} eV/Å (largest component)")
    if s["volume_A3"]:
        lo, hi = s["volume_A3"]
        lines.append(f"cell volume:   {lo:.3f} to {hi:.3f} Å³")
    return "\n".join(lines) + "\n"


def _inline(value):
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True)
