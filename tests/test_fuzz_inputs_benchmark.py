"""Tests of benchmarks/fuzz_inputs.py: each outcome is told apart, and the table counts them."""

from __future__ import annotations

import pytest

from benchmarks import fuzz_inputs as fuzz  # a package module: its dataclass needs a home in sys.modules


@pytest.mark.parametrize(
    "case, outcome",
    [
        (fuzz.Case("error", "raise ValueError('x must be finite')", words=("must be finite",)), "clear error"),
        (fuzz.Case("wrong words", "raise ValueError('bad')", words=("must be finite",)), "unhelpful"),
        (fuzz.Case("wrong type", "raise KeyError('x must be finite')", words=("must be finite",)), "unhelpful"),
        (fuzz.Case("good input refused", "raise ValueError('no')", expect="correct"), "unhelpful"),
        (fuzz.Case("accepted", "x = 1"), "silently wrong"),
        (fuzz.Case("wrong result", "assert 1 == 2, 'off by one'", expect="correct"), "silently wrong"),
        (fuzz.Case("fine", "assert torch.zeros(2).sum() == 0", expect="correct"), "correct"),
        (fuzz.Case("segfault", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", expect="correct"), "crash"),
        (fuzz.Case("stuck", "time.sleep(60)", expect="correct", timeout=8.0), "hang"),
    ],
    ids=lambda v: v if isinstance(v, str) else v.name,
)
def test_each_outcome_is_told_apart(case, outcome):
    assert fuzz.run_case(case)[0] == outcome


def test_the_table_lists_each_case_and_counts_the_outcomes(capsys):
    assert fuzz.main(["--only", "car: NaN"]) == 0  # "car: NaN start", "car: NaN obstacle"
    out = capsys.readouterr().out
    assert "car: NaN start" in out and "car: NaN obstacle" in out and "car: infinite goal" not in out
    assert out.strip().splitlines()[-1] == "2 clear error, 0 correct, 0 unhelpful, 0 silently wrong, 0 crash, 0 hang, 0 did not run"


def test_every_case_names_its_expectation():
    names = [case.name for case in fuzz.CASES]
    assert len(names) == len(set(names))
    for case in fuzz.CASES:
        assert case.expect in ("error", "correct")
        assert case.expect == "correct" or case.words, f"{case.name}: an expected error names its words"
