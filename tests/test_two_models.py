"""Two models share one outputs tree: each model's runs have a folder of their own
(``<outputs>/<model>/<method>/...``), neither is refused nor replaced because of the other, and
compare.py gives one report each; a tree of the layout before the model named a folder is still
read, resumed and skipped where it is."""

from __future__ import annotations

import json
import shutil

import pytest

from helpers import model_dir, read_result, run_script, tiny_args
from mtlvsift.run_folder import locate_run_folder, model_slug, run_folder


@pytest.mark.slow
def test_two_models_train_into_one_tree_and_get_a_report_each(tmp_path, tiny_model, tiny_model_no_dropout,
                                                               tiny_glue):
    out = tmp_path / "out"
    for model in (tiny_model, tiny_model_no_dropout):
        run_script("train_stilts", ["--target", "rte", *tiny_args(model, tiny_glue, out, epochs=1)])
    folders = {model: model_dir(out, model) / "single" / "rte" / "seed-0"
               for model in (tiny_model, tiny_model_no_dropout)}
    assert all((f / "result.json").is_file() for f in folders.values()) and len(set(folders.values())) == 2
    before = (folders[tiny_model] / "result.json").read_bytes()
    # --overwrite of one model's run leaves the other model's run alone.
    run_script("train_stilts", ["--target", "rte", *tiny_args(tiny_model_no_dropout, tiny_glue, out, epochs=1),
                                "--overwrite"])
    assert (folders[tiny_model] / "result.json").read_bytes() == before

    run_script("compare", ["--outputs", out])
    summaries = sorted((out / "report").glob("*/summary.json"))
    assert len(summaries) == 2, sorted(p.name for p in (out / "report").iterdir())
    models = {json.loads(p.read_text())["model"] for p in summaries}
    assert models == {str(tiny_model), str(tiny_model_no_dropout)}


def test_a_legacy_folder_of_the_same_model_is_used_where_it_is(tmp_path):
    legacy = tmp_path / "single" / "rte" / "seed-0"
    legacy.mkdir(parents=True)
    (legacy / "config.json").write_text(json.dumps({"model": "org/enc", "seed": 0}))
    assert locate_run_folder(tmp_path, "org/enc", "single", "rte", 0) == legacy
    # Another model's legacy run, or a damaged config.json, is not this model's.
    assert locate_run_folder(tmp_path, "other", "single", "rte", 0) == tmp_path / "other" / "single" / "rte" / "seed-0"
    (legacy / "config.json").write_text("{not json")
    assert locate_run_folder(tmp_path, "org/enc", "single", "rte", 0) == run_folder(tmp_path, "org/enc", "single", "rte", 0)
    # Once the new folder exists it is the one.
    (legacy / "config.json").write_text(json.dumps({"model": "org/enc"}))
    run_folder(tmp_path, "org/enc", "single", "rte", 0).mkdir(parents=True)
    assert locate_run_folder(tmp_path, "org/enc", "single", "rte", 0) == tmp_path / "org-enc" / "single" / "rte" / "seed-0"


def test_model_folder_names_are_distinct_and_short():
    assert model_slug("FacebookAI/roberta-base") == "FacebookAI-roberta-base"
    assert model_slug("/data/my enc/") == "data-my-enc"
    long_a, long_b = "/x/" + "a" * 300 + "/one", "/x/" + "a" * 300 + "/two"
    assert len(model_slug(long_a)) <= 100 and model_slug(long_a) != model_slug(long_b)


@pytest.mark.slow
def test_a_legacy_tree_is_resumed_and_read(tmp_path, tiny_model, tiny_glue):
    """A run made before the model named a folder: moved to the old place, it is found complete
    there (not trained again), a STILTs run starts from it, and compare.py reports both."""
    out = tmp_path / "out"
    args = tiny_args(tiny_model, tiny_glue, out, epochs=1)
    run_script("train_stilts", ["--target", "sst2", *args])
    shutil.move(str(model_dir(out, tiny_model) / "single"), str(out / "single"))
    again = run_script("train_stilts", ["--target", "sst2", *args])
    assert "is already complete" in again.output and not (model_dir(out, tiny_model) / "single").exists()
    run_script("train_stilts", ["--target", "rte", "--support", "sst2", "--support-seeds", "0", *args])
    assert read_result(out, "stilts", "rte--sst2")["start_model"]["run"] == "single/sst2/seed-0"
    run_script("compare", ["--outputs", out])
    summary = json.loads(next((out / "report").rglob("summary.json")).read_text())
    assert summary["model"] == str(tiny_model)
