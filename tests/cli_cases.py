"""Running the real command line in-process for the bad-input cases: the exit status, the output, and the one
``error:`` line a refusal must print (never a traceback)."""
from __future__ import annotations

from kaggle_planet.cli import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
