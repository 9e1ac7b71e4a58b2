from __future__ import annotations

import pytest

from medseg.cli import main


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "predict" in capsys.readouterr().out


def test_usage_error_is_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate-detection"]) == 2
    assert "Missing option" in capsys.readouterr().err


def test_unknown_command_is_an_error() -> None:
    assert main(["no-such-command"]) != 0


def test_medseg_error_is_one_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["predict", str(tmp_path / "missing.dcm"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("medseg: error:") and "missing.dcm" in err and len(err.splitlines()) == 1
