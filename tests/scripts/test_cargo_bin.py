"""Building the workspace's binaries (scripts/cargo_bin.py): a build that takes a while says so, with its
elapsed time, instead of leaving a silent terminal; a failed one raises with cargo's own words."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import cargo_bin


def test_a_build_that_takes_a_while_says_so(monkeypatch, capsys):
    monkeypatch.setattr(cargo_bin, "QUIET_BUILD_S", 0.0)  # even cargo's no-op check counts as a while
    binary = cargo_bin.build("sparktrends-alerter", release=False)
    assert binary.is_file() and binary.parent.name == "debug"
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("cargo: building sparktrends-alerter (debug); a fresh clone's first build takes")
    assert lines[-1].startswith("cargo: built sparktrends-alerter (debug) in ")


def test_a_failed_build_raises_with_cargos_message():
    with pytest.raises(cargo_bin.BuildError, match="no-such-package"):
        cargo_bin.build("no-such-package", release=False)
