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


def _help(command, capsys):
    import pytest

    from tokenbound.cli import main

    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse's line breaks undone


def test_help_texts_say_what_the_flags_do(capsys):
    train = _help("train", capsys)
    assert "--vocab-size VOCAB_SIZE vocabulary size V; logits have shape (B, T, V) (default: " \
           "the training data's vocab_size)" in train
    assert "(default: 256)" in _help("model-info", capsys)  # there it is GPTConfig's default
    assert "the separator text is deleted" in _help("prepare", capsys)
    assert "--no-progress no progress bar" in _help("evaluate", capsys)
