"""The list of registered subcommands. A command is added here only once it works."""

from mlptools.cli.airss_search import airss_search
from mlptools.cli.analyze import analyze
from mlptools.cli.build_db import build_db
from mlptools.cli.convert import convert
from mlptools.cli.describe import describe
from mlptools.cli.fit import fit
from mlptools.cli.info import info
from mlptools.cli.md import md
from mlptools.cli.quench import quench
from mlptools.cli.validate import validate
from mlptools.cli.wulff import wulff

COMMANDS = [info, convert, build_db, describe, fit, validate, md, quench, analyze, airss_search,
            wulff]
