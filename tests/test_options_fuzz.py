"""Property test: whatever values the train scripts' options get, no traceback.

Every outcome is a run (its folder claimed, with a config.json that holds finite numbers) or one
`Error:` line (a usage error or the project's own), and a rejected value writes nothing under the
output folder. To stay fast, a run stops once the training loop is set up (the folder claimed,
the model, optimizer, schedule, evaluation points and checkpoint loaded): the harmless point
after which no option value is checked any more.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers import nothing_written, run_script
from mtlvsift.run_options import OPTIONS

FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1),  # often in range, so that runs happen too
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 5e-324, 1e-300, 1e-12, 1e308,
                     -0.0, 0.5, 1.0, 2.0]),
)
INTEGERS = st.one_of(
    st.integers(min_value=-3, max_value=200),
    st.sampled_from([-1, 0, 1, 2**31, 2**32 - 1, 2**32, 2**63, 10**30, 10**400]),
)
FLOAT_OPTIONS = [o.flag for o in OPTIONS if o.kind == "float"]
INT_OPTIONS = [o.flag for o in OPTIONS if o.kind == "int"]
SCRIPTS = {  # each script's least arguments for a quick run on the tiny files
    "train_stilts": ["--target", "rte"],
    "train_mtl": ["--target", "rte", "--support", "sst2", "--sampling", "size"],
    "train_mtl_all": ["--tasks", "rte,sst2"],
}
OPTIONS = st.lists(st.sampled_from(FLOAT_OPTIONS + INT_OPTIONS).flatmap(
    lambda option: st.tuples(st.just(option), FLOATS if option in FLOAT_OPTIONS else INTEGERS)),
    min_size=1, max_size=3)


@pytest.fixture
def stop_before_training(monkeypatch):
    from mtlvsift.train.loop import Trainer

    monkeypatch.setattr(Trainer, "train", lambda self: {"stopped": "before the first step"})


def _finite_json(text: str) -> dict:
    def refuse(constant: str):
        raise AssertionError(f"config.json holds {constant}")

    return json.loads(text, parse_constant=refuse)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(script=st.sampled_from(sorted(SCRIPTS)), options=OPTIONS)
def test_any_option_value_gives_a_run_or_one_error_line(script, options, tiny_model, tiny_glue,
                                                        tmp_path, stop_before_training):
    out = Path(tempfile.mkdtemp(dir=tmp_path))
    quick = ["--epochs", 1, "--max-train-examples", 16, "--batch-size", 8, "--max-seq-length", 32]
    args = [*SCRIPTS[script], "--model", tiny_model, "--data-dir", tiny_glue, "--output-dir", out,
            *quick]
    for option, value in options:  # the last occurrence of an option wins
        args += [option, value]
    result = run_script(script, args, expect_ok=False)
    assert "Traceback" not in result.output
    event(f"exit status {result.exit_code}")  # --hypothesis-show-statistics: runs and errors
    if result.exit_code == 0:
        configs = list(out.rglob("config.json"))
        assert len(configs) == 1, result.output
        _finite_json(configs[0].read_text())
    else:
        assert result.exc_info[0] is SystemExit, result.exc_info  # not an uncaught exception
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, result.output
        assert nothing_written(out), (result.output, sorted(out.rglob("*")))
