"""The list of registered subcommands. A command is added here only once it works."""

from mlptools.cli.build_db import build_db
from mlptools.cli.convert import convert
from mlptools.cli.describe import describe
from mlptools.cli.fit import fit
from mlptools.cli.info import info

COMMANDS = [info, convert, build_db, describe, fit]
