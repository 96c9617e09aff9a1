"""`tokenbound compress` (not built yet)."""

from tokenbound.errors import UserError

HELP = "(not built yet)"


def add_arguments(parser):
    pass


def run(args):
    raise UserError("this command is not built yet")
