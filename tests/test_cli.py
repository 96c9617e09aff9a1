import subprocess
import sys


def test_help_lists_every_command():
    from tokenbound.cli import COMMANDS

    out = subprocess.run([sys.executable, "-m", "tokenbound", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for name in COMMANDS:
        assert name in out


def test_file_system_errors_are_one_line_and_verbose_goes_anywhere(tmp_path, capsys):
    from tokenbound.cli import main

    corpus = tmp_path / "c.txt"
    corpus.write_text("some text\n")
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    assert main(["prepare", "--corpus", str(corpus), "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Not a directory" in err and "Traceback" not in err
    calc = ["--method", "azuma", "--mean", "3", "--tokens", "1000", "--code-bits", "80",
            "--range", "8", "--offset", "0"]
    assert main(["calc", "-v", *calc]) == 0 and main(["-v", "calc", *calc]) == 0
