"""The ``mlptools`` command group: registers the subcommands and maps errors to exit codes.

Exit status: 0 success, 1 bad input or failed computation (one line on stderr), 2 usage error,
3 a check failed, 70 an internal error, 143 SIGTERM after the checkpoint was flushed.
"""

import sys

import click

import mlptools
from mlptools.cli import _common
from mlptools.errors import MlptoolsError

EXIT_INTERNAL = 70


class MlptoolsGroup(click.Group):
    """A group whose ``invoke`` turns MlptoolsError into one stderr line and an exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise
        except MlptoolsError as exc:
            if ctx.meta.get(_common.DEBUG_KEY):
                raise
            click.echo(f"Error: {_one_line(exc)}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if ctx.meta.get(_common.DEBUG_KEY):
                raise
            click.echo(
                f"Error: internal error ({type(exc).__name__}: {_one_line(exc)}); rerun with "
                "--debug and report it",
                err=True,
            )
            ctx.exit(EXIT_INTERNAL)


def _one_line(exc):
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=MlptoolsGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(mlptools.__version__, "-V", "--version", prog_name="mlptools")
@_common.verbosity_options
def cli():
    """Tools for machine-learned interatomic potentials, from reference data to simulations.

    Structures flow between commands as extended XYZ ('-' is stdin/stdout); descriptors and models
    are self-describing HDF5 files. Units: energy eV, length Å, force eV/Å, stress GPa, time fs,
    temperature K.

    \b
    Example:
      mlptools info train.xyz
      cat train.xyz | mlptools info -
    """
    _common.configure_logging(click.get_current_context().meta.get(_common.VERBOSITY_KEY, 0))


def _register():
    # Registered eagerly (no lazy group) so that tools/gen_man.py sees every command; each command
    # module keeps its heavy imports inside the function body so start-up stays fast.
    from mlptools.cli import commands

    for command in commands.COMMANDS:
        cli.add_command(command)


_register()


def main():
    """Console-script entry point."""
    try:
        cli.main(prog_name="mlptools")
    except BrokenPipeError:
        # e.g. `mlptools ... | head`: the reader went away; exit quietly like other unix tools.
        sys.stderr.close()
        sys.exit(141)
