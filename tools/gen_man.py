"""Generate man pages for ``mlptools`` and each subcommand from the click definitions.

Usage: ``python tools/gen_man.py OUTDIR`` (``make man``). Dated from SOURCE_DATE_EPOCH so that the
output is reproducible; tests/test_man.py regenerates and compares to fail on stale pages.
"""

import datetime
import os
import sys
from pathlib import Path

import click

EXIT_STATUS = [
    ("0", "Success."),
    ("1", "Bad input or a failed computation; one line on stderr names the file and the problem."),
    ("2", "Usage error (unknown option, bad option value)."),
    ("3", "A requested check failed (validation thresholds, the MD extrapolation guard)."),
    ("70", "Internal error; rerun with --debug and report it."),
    ("143", "Stopped by SIGTERM after the checkpoint was written."),
]

ENVIRONMENT = [
    ("MLPTOOLS_SHARED_DATA", "Directory of the real DFT data sets used by the test suite."),
    ("OMP_NUM_THREADS", "Threads used by the compiled kernels."),
    ("MLPTOOLS_OPENMP", "Set to 0 at build time to build the kernels without OpenMP."),
    ("MLPTOOLS_CYTHON_DEBUG", "Set to 1 at build time to compile the kernels with bounds checks."),
]

FILES = [
    ("*.xyz", "Extended XYZ structures; labels under the ASE keys energy (eV), forces (eV/Å), "
              "stress (eV/Å³, ASE sign), virial (eV), config_type."),
    ("*.h5", "Self-describing HDF5 files (structures, descriptors, models): root attributes "
             "format, format_version, units, hypers and provenance (JSON)."),
]


def escape(text):
    """Escape text for roff: backslashes, leading control characters, hyphens in words."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    # groff reads ASCII; any other character becomes its Unicode escape (Å -> \[u00C5])
    text = "".join(ch if ord(ch) < 128 else f"\\[u{ord(ch):04X}]" for ch in text)
    lines = []
    for line in text.split("\n"):
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def split_help(help_text):
    """Paragraphs of a click help text up to \\f; (kind, text) with kind 'p', 'nf' or 'examples'."""
    text = (help_text or "").split("\f")[0]
    import inspect

    text = inspect.cleandoc(text)
    out = []
    for para in text.split("\n\n"):
        if not para.strip():
            continue
        if para.startswith("\b\n") or para.startswith("\b"):
            body = para.lstrip("\b").lstrip("\n")
            first = body.split("\n", 1)[0].strip().lower()
            kind = "examples" if first in ("example:", "examples:") else "nf"
            if kind == "examples":
                body = body.split("\n", 1)[1] if "\n" in body else ""
                body = "\n".join(line[2:] if line.startswith("  ") else line
                                 for line in body.split("\n"))
            out.append((kind, body))
        else:
            out.append(("p", " ".join(para.split())))
    return out


def render_paragraphs(paragraphs):
    lines = []
    for kind, text in paragraphs:
        if kind == "p":
            lines += [".PP", escape(text)]
        else:
            lines += [".PP", ".nf", escape(text), ".fi"]
    return lines


def options_section(command, ctx):
    lines = []
    for param in command.get_params(ctx):
        if isinstance(param, click.Argument):
            name = param.human_readable_name
            lines += [".TP", f"\\fB{escape(name)}\\fR"]
            help_text = getattr(param, "help", None) or _argument_help(command, param)
            if help_text:
                lines.append(escape(help_text))
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        lines += [".TP", f"\\fB{escape(names)}\\fR", escape(help_text)]
    return lines


def _argument_help(command, param):
    """Arguments have no help in click; commands may describe them in ``argument_help``."""
    return getattr(command, "argument_help", {}).get(param.name, "")


def page(name, command, ctx, date, version, subcommands=()):
    title = name.upper().replace(" ", "-")
    short = command.get_short_help_str(limit=200) if hasattr(command, "get_short_help_str") else ""
    paragraphs = split_help(command.help)
    examples = [text for kind, text in paragraphs if kind == "examples"]
    paragraphs = [(k, t) for k, t in paragraphs if k != "examples"]
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [
        f'.TH "{title}" "1" "{date}" "mlptools {version}" "mlptools manual"',
        ".SH NAME",
        f"{escape(name.replace(' ', '-'))} \\- {escape(short)}",
        ".SH SYNOPSIS",
        f"\\fB{escape(name)}\\fR {escape(usage)}",
        ".SH DESCRIPTION",
        *render_paragraphs(paragraphs),
        ".SH OPTIONS",
        *options_section(command, ctx),
    ]
    if subcommands:
        lines.append(".SH COMMANDS")
        for sub_name, sub in subcommands:
            lines += [".TP", f"\\fB{escape(sub_name)}\\fR",
                      escape(sub.get_short_help_str(limit=200))
                      + f" See \\fBmlptools\\-{sub_name}\\fR(1)."]
    lines.append(".SH EXIT STATUS")
    for code, text in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", escape(text)]
    lines.append(".SH ENVIRONMENT")
    for var, text in ENVIRONMENT:
        lines += [".TP", f"\\fB{var}\\fR", escape(text)]
    lines.append(".SH FILES")
    for pattern, text in FILES:
        lines += [".TP", f"\\fI{escape(pattern)}\\fR", escape(text)]
    if examples:
        lines.append(".SH EXAMPLES")
        for text in examples:
            lines += [".PP", ".nf", escape(text), ".fi"]
    if not subcommands:
        lines += [".SH SEE ALSO", "\\fBmlptools\\fR(1)"]
    return "\n".join(lines) + "\n"


def generate(outdir):
    """Write mlptools.1 and mlptools-<cmd>.1 into ``outdir``; return the written paths."""
    from mlptools import __version__
    from mlptools.cli import cli

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    date = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    root_ctx = click.Context(cli, info_name="mlptools")
    subs = sorted(cli.commands.items())
    written = []
    path = outdir / "mlptools.1"
    path.write_text(page("mlptools", cli, root_ctx, date, __version__, subcommands=subs))
    written.append(path)
    for sub_name, sub in subs:
        ctx = click.Context(sub, info_name=sub_name, parent=root_ctx)
        path = outdir / f"mlptools-{sub_name}.1"
        path.write_text(page(f"mlptools {sub_name}", sub, ctx, date, __version__))
        written.append(path)
    # pages of commands that no longer exist must not linger
    for old in outdir.glob("mlptools*.1"):
        if old not in written:
            old.unlink()
    return written


if __name__ == "__main__":
    for p in generate(sys.argv[1] if len(sys.argv) > 1 else "man"):
        print(p)
