"""benchmarks/fuzz_api.py: every case gets a clear error or a correct result, and the runner
classifies what a case does (the outcomes the lead counts)."""

import pytest

from benchmarks import fuzz_api


@pytest.mark.parametrize("name", list(fuzz_api.CASES))
def test_every_case_is_a_clear_error_or_correct(name):
    outcome, detail = fuzz_api.run_case(name)
    assert outcome in ("clear error", "correct"), (outcome, detail)


def test_run_case_tells_the_outcomes_apart(monkeypatch):
    def raw():
        raise RuntimeError("deep inside torch")

    cases = {
        "ok": ("test", lambda: True),
        "wrong": ("test", lambda: False),
        "raw": ("test", raw),
        "clear": ("test", lambda: fuzz_api.expect_error(lambda: int("x"), ValueError, "invalid literal")),
        "accepted": ("test", lambda: fuzz_api.expect_error(lambda: None, ValueError, "anything")),
        "other message": ("test", lambda: fuzz_api.expect_error(lambda: int("x"), ValueError, "not this")),
    }
    monkeypatch.setattr(fuzz_api, "CASES", cases)
    outcomes = {name: fuzz_api.run_case(name)[0] for name in cases}
    assert outcomes == {"ok": "correct", "wrong": "silently wrong", "raw": "unhelpful error", "clear": "clear error",
                        "accepted": "silently wrong", "other message": "unhelpful error"}
