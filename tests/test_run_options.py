"""The schema of a run's options (mtlvsift/run_options.py): one declaration per option, from which
the scripts' options, the run identity, the folder name and the printed command all follow."""

from __future__ import annotations

import shlex

import pytest
from click.testing import CliRunner

from helpers import load_script
from mtlvsift import run_options
from mtlvsift.commands import run_command
from mtlvsift.errors import MtlvsiftError
from mtlvsift.train.config import mtl_all_config, mtl_config, stilts_config

NEW = run_options.Option("label_smoothing", "--label-smoothing", "float", default=0.0, bounds=(0, 1),
                         help="Smooth the classification targets by this much.")


def _parse(script: str, args: list[str]) -> dict:
    params = dict(load_script(script).main.make_context(script, args).params)
    for key in ("restart", "dry_run", "plan_json"):
        params.pop(key)
    return params


def test_an_option_added_to_the_schema_appears_everywhere(monkeypatch, tmp_path):
    """One entry in OPTIONS, no other edit: the option is in every script's --help (the grid's
    too), in the run identity, and in the command that rebuilds the run."""
    monkeypatch.setattr(run_options, "OPTIONS", (*run_options.OPTIONS, NEW))
    for script in ("train_stilts", "train_mtl", "train_mtl_all", "run_grid"):
        help_text = CliRunner().invoke(load_script(script).main, ["--help"]).output
        assert "--label-smoothing" in help_text and "Smooth the classification" in help_text, script

    params = _parse("train_stilts", ["--target", "rte", "--support", "mrpc", "--label-smoothing",
                                     "0.1", "--output-dir", str(tmp_path)])
    config = stilts_config(params.pop("target"), params.pop("support"), params)
    assert config.label_smoothing == 0.1 and config.identity()["label_smoothing"] == 0.1
    command = run_command(config.as_dict(), [0])
    assert "--label-smoothing 0.1 " in command
    args = shlex.split(command)[4:]  # past "accelerate launch --quiet scripts/train_stilts.py"
    again = _parse("train_stilts", args)
    rebuilt = stilts_config(again.pop("target"), again.pop("support"), again)
    assert rebuilt.identity() == config.identity() and rebuilt.run_dir == config.run_dir
    # The default stays out of the command, and an old record without the field reads as default.
    plain = stilts_config("rte", None, {"output_dir": str(tmp_path)})
    assert plain.label_smoothing == 0.0 and "--label-smoothing" not in run_command(plain.as_dict(), [0])


def test_an_option_given_to_a_method_it_does_not_apply_to_is_an_error():
    with pytest.raises(MtlvsiftError, match="--batching applies to pairwise MTL, MTL_All runs only"):
        stilts_config("rte", "mrpc", {"batching": "homogeneous"})
    with pytest.raises(MtlvsiftError, match="--init-from applies to STILTs runs only"):
        mtl_config("rte", ["mrpc"], {"init_from": "/some/model"})
    with pytest.raises(MtlvsiftError, match="--target-fraction applies to STILTs, pairwise MTL runs only"):
        mtl_all_config(["rte", "mrpc"], {"target_fraction": 0.5})
    # Offered but unused (size sampling reads no single runs): None, outside the identity.
    config = mtl_config("rte", ["mrpc"], {"sampling": "size", "dynamic_rule": "normalized",
                                          "support_seeds": (0, 1)})
    assert config.dynamic_rule is None and config.support_seeds is None
    assert config.name == "rte--mrpc__sampling-size"


def test_defaults_and_folder_names_follow_the_declarations():
    assert stilts_config("rte").name == "rte"
    assert stilts_config("rte", "mnli", {"max_train_examples": 300, "data_seed": 2,
                                         "protocol": "original"}).name == \
        "rte--mnli__protocol-original_n-300_ds-2"
    mtl = mtl_config("rte", ["mnli"], {"dynamic_rule": "normalized", "batching": "homogeneous",
                                       "target_fraction": 0.5, "support_ratio": 2.0})
    assert mtl.name == "rte--mnli__rule-normalized_batching-homogeneous_tf-0.5_sr-2"
    assert mtl.sampling == "dynamic" and mtl.support_seeds == [0, 1, 2, 3, 4]
    assert mtl_all_config(["rte", "sst2"], {"sampling": "dynamic"}).name == "all__tasks-rte+sst2_sampling-dynamic"
    assert mtl_all_config().sampling == "size"


def test_every_declaration_is_complete():
    flags = [o.flag for o in run_options.OPTIONS]
    assert len(set(flags)) == len(flags) and len(set(run_options.names())) == len(flags)
    for o in run_options.OPTIONS:
        assert o.flag.startswith("--") and set(o.methods) <= set(run_options.METHODS), o.name
        assert o.kind in ("int", "float", "bool", "text", "path", "choice", "seeds"), o.name
        assert (o.kind == "choice") == bool(o.choices), o.name
        assert o.suffix is None or o.suffix in (run_options.LEADING_SUFFIX, *run_options.FOLDER_ORDER)


@pytest.mark.parametrize("option, value", [("output_dir", "out\tdir"), ("data_dir", "glue\nx"),
                                           ("model", "min\x1bilm"), ("task_files", ["a\rb.yaml"])])
def test_a_name_or_path_with_a_control_character_is_one_error(option, value):
    """It would reach a record, a printed command and compare.py's checks, which refuse it."""
    with pytest.raises(MtlvsiftError, match="holds a control character"):
        stilts_config("rte", None, {option: value})


def test_run_grid_with_a_tab_in_a_path_is_one_error_line(tmp_path):
    from helpers import run_script

    result = run_script("run_grid", ["--tasks", "rte,mrpc", "--methods", "single", "--output-dir",
                                     tmp_path / "out\tdir", "--dry-run"], expect_ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "--output-dir" in result.output and "holds a control character" in result.output
    assert not (tmp_path / "out\tdir").exists()


def test_epochs_are_bounded_so_that_a_plan_lists_them():
    result = CliRunner().invoke(load_script("train_stilts").main,
                                ["--target", "rte", "--epochs", "1000000000", "--dry-run"])
    assert result.exit_code == 2 and "1000000000 is not in the range 1<=x<=10000" in result.output
