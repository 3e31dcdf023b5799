"""scripts/recommend.py on the tiny encoder and tiny GLUE: single runs of two candidates made by
the train script, then the ranking, its JSON, and one clear line for each bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mtlvsift.run_folder import model_slug

from helpers import fails, run_script, tiny_args
from mtlvsift.recommend.features import stratified_indices

KEYS = {"size_rule", "logme", "logme_base", "logme_gain", "rank", "examples", "seconds"}


@pytest.fixture(scope="module")
def grid(tiny_model, tiny_glue, tmp_path_factory):
    """Finished single runs (seed 0) of SST-2 and CoLA."""
    out = tmp_path_factory.mktemp("outputs")
    for task in ("sst2", "cola"):
        run_script("train_stilts", ["--target", task, *tiny_args(tiny_model, tiny_glue, out, epochs=1)])
    return out


def recommend_args(tiny_model, tiny_glue, grid, *extra):
    return ["--model", tiny_model, "--data-dir", tiny_glue, "--outputs", grid,
            "--support-seeds", "0", *extra]


def test_candidates_are_ranked_and_written_as_json(tiny_model, tiny_glue, grid, tmp_path):
    out = tmp_path / "advice.json"
    result = run_script("recommend", ["--target", "rte", "--candidates", "sst2,cola,stsb",
                                      "--json", out, *recommend_args(tiny_model, tiny_glue, grid)])
    advice = json.loads(out.read_text())
    by_name = {c["support"]: c for c in advice["candidates"]}
    assert set(by_name) == {"sst2", "cola", "stsb"} and list(by_name)[-1] == "stsb"  # unranked last
    for candidate in advice["candidates"]:
        assert KEYS <= set(candidate)
    scored = [by_name["sst2"], by_name["cola"]]
    assert sorted(c["rank"] for c in scored) == [1, 2]
    for c in scored:
        assert c["logme_gain"] == pytest.approx(c["logme"] - c["logme_base"])
        assert c["examples"] == 48 and c["seconds"] > 0
        assert c["start_model"].endswith("seed-0/best")
    assert scored[0]["logme_base"] == scored[1]["logme_base"]
    ranked = sorted(scored, key=lambda c: c["rank"])
    assert ranked[0]["logme_gain"] >= ranked[1]["logme_gain"]
    # Same training size (48): a tie, the size rule does not choose; no MTL/STILTs cells measured.
    assert by_name["sst2"]["size_rule"]["method"] is None
    assert by_name["stsb"]["rank"] is None and "train_stilts.py --target stsb" in by_name["stsb"]["command"]
    text = " ".join(result.output.split())
    assert "STS-B has no finished single runs" in text
    assert " tie " in text and "no pick to check" in text  # size rule columns: equal sizes
    kept = grid / "recommendations" / model_slug(str(tiny_model)) / "rte.json"
    assert json.loads(kept.read_text()) == advice  # the copy compare.py evaluates


def test_a_regression_target_uses_the_regression_form(tiny_model, tiny_glue, grid, tmp_path):
    out = tmp_path / "advice.json"
    run_script("recommend", ["--target", "stsb", "--candidates", "sst2", "--max-examples", 20,
                             "--json", out, *recommend_args(tiny_model, tiny_glue, grid)])
    [candidate] = json.loads(out.read_text())["candidates"]
    assert candidate["examples"] == 20 and np.isfinite(candidate["logme_gain"])


def test_bf16_embedding_is_recorded_and_close_to_fp32(tiny_model, tiny_glue, grid, tmp_path):
    values = {}
    for precision in ("no", "bf16"):
        out = tmp_path / f"{precision}.json"
        run_script("recommend", ["--target", "rte", "--candidates", "sst2", "--json", out,
                                 "--mixed-precision", precision,
                                 *recommend_args(tiny_model, tiny_glue, grid)])
        advice = json.loads(out.read_text())
        assert advice["mixed_precision"] == precision
        values[precision] = advice["candidates"][0]
    for key in ("logme", "logme_base"):  # per example LogME, bf16 rounding moves it a little
        assert values["bf16"][key] == pytest.approx(values["no"][key], abs=0.05)
        assert values["bf16"][key] != values["no"][key]  # bf16 really ran


def test_auto_precision_is_bf16_only_where_the_device_computes_it(monkeypatch):
    import torch

    from mtlvsift.recommend.features import embedding_precision

    for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, check, lambda: False, raising=False)
    assert embedding_precision("auto") == "no"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert embedding_precision("auto") == "bf16"
    assert embedding_precision("no") == "no" and embedding_precision("bf16") == "bf16"
    with pytest.raises(ValueError):
        embedding_precision("fp16")


def test_the_ranking_records_the_precision_auto_chose(tiny_model, tiny_glue, grid, tmp_path):
    from mtlvsift.recommend.features import embedding_precision

    out = tmp_path / "auto.json"
    run_script("recommend", ["--target", "rte", "--candidates", "sst2", "--json", out,
                             *recommend_args(tiny_model, tiny_glue, grid)])
    assert json.loads(out.read_text())["mixed_precision"] == embedding_precision("auto")


def test_bad_input_is_one_line_each(tiny_model, tiny_glue, grid, tmp_path):
    args = recommend_args(tiny_model, tiny_glue, grid)
    fails("recommend", ["--target", "nope", *args], "Unknown task 'nope'")
    fails("recommend", ["--target", "rte", "--candidates", "sst2,nope", *args], "Unknown task 'nope'")
    fails("recommend", ["--target", "rte", "--max-examples", 0, *args], "--max-examples")
    fails("recommend", ["--target", "rte", "--candidates", "rte", *args], "names the target RTE")
    one_class = shutil.copytree(tiny_glue, tmp_path / "glue")
    lines = (one_class / "RTE" / "train.tsv").read_text().splitlines()
    rows = [line.rsplit("\t", 1)[0] + "\tentailment" for line in lines[1:]]
    (one_class / "RTE" / "train.tsv").write_text("\n".join([lines[0], *rows]) + "\n")
    fails("recommend", ["--target", "rte", *recommend_args(tiny_model, one_class, grid)],
          "RTE training examples have one class only")


def test_a_candidate_without_single_runs_is_listed_with_its_command(tiny_model, tiny_glue, grid):
    result = run_script("recommend", ["--target", "rte", "--candidates", "stsb",
                                      *recommend_args(tiny_model, tiny_glue, grid)])
    text = " ".join(result.output.split())
    assert "STS-B has no finished single runs to score; make them with:" in text
    assert "scripts/train_stilts.py --target stsb" in text


def test_a_json_path_under_a_file_is_one_line_before_any_embedding(tiny_model, tiny_glue, grid,
                                                                    tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me\n")
    output = fails("recommend", ["--target", "rte", "--candidates", "sst2", "--json",
                                 blocker / "x.json", *recommend_args(tiny_model, tiny_glue, grid)],
                   "is a file, not a folder")
    assert blocker.read_text() == "keep me\n"
    assert "Supporting tasks" not in output  # stopped before the embedding, not after


def test_a_ranking_with_nothing_scored_does_not_replace_a_kept_one(tiny_model, tiny_glue, grid):
    run_script("recommend", ["--target", "rte", "--candidates", "sst2",
                             *recommend_args(tiny_model, tiny_glue, grid)])
    [kept] = Path(grid).glob("recommendations/*/rte.json")
    before = kept.read_text()
    run_script("recommend", ["--target", "rte", "--candidates", "stsb",  # no single runs
                             *recommend_args(tiny_model, tiny_glue, grid)])
    assert kept.read_text() == before


def test_stratified_subsample_keeps_each_class_share():
    labels = np.array([0] * 90 + [1] * 10)
    chosen = stratified_indices(labels, 20, regression=False)
    assert len(chosen) == 20 and (labels[chosen] == 1).sum() == 2
    assert np.array_equal(chosen, np.sort(chosen))
    assert len(stratified_indices(labels, 500, regression=False)) == 100
    assert len(set(stratified_indices(np.linspace(0, 1, 50), 7, regression=True))) == 7


def test_packed_features_equal_padded_ones(tiny_model, tiny_glue):
    from mtlvsift.recommend.features import target_features
    from mtlvsift.tasks import get_task

    task = get_task("rte")
    packed, labels, _ = target_features(str(tiny_model), task, tiny_glue, 40, 64, packing=True,
                                        use_cache=False)
    padded, same_labels, _ = target_features(str(tiny_model), task, tiny_glue, 40, 64,
                                             packing=False, use_cache=False)
    assert packed.shape == padded.shape == (40, packed.shape[1]) and (labels == same_labels).all()
    assert np.allclose(packed, padded, rtol=1e-4, atol=1e-5)
    assert not np.allclose(packed[0], packed[1])  # rows are not all the same vector
