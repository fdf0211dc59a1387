"""The list of registered subcommands. A command is added here only once it works."""

COMMANDS = []
