import subprocess
import sys


def test_help_lists_every_command():
    from tokenbound.cli import COMMANDS

    out = subprocess.run([sys.executable, "-m", "tokenbound", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for name in COMMANDS:
        assert name in out
