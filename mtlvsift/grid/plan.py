"""The runs of a grid (tasks x seeds x methods), each with its config and command, in an order
that puts every run after the runs it reads.

Two stages: runs that read no other run (single runs, MTL and MTL_All with uniform or size
sampling), then runs that read finished single runs (STILTs starts from the best supporting
seed; dynamic sampling reads the mean single-task scores). Every run of the grid gets the grid's
options, and those that read single runs get ``--support-seeds`` = the grid's seeds, so a grid
over two seeds never waits for five. Pairwise MTL is one run per unordered pair (its record
holds both tasks' scores, so it fills both cells of the matrix), with the smaller task as target.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations, permutations
from typing import Any

from mtlvsift import run_options, run_record
from mtlvsift.commands import run_args, run_command
from mtlvsift.errors import MtlvsiftError
from mtlvsift.names import METHODS
from mtlvsift.run_folder import RunFolder
from mtlvsift.run_identity import identity_changes, stale_reason
from mtlvsift.tasks import get_task, get_tasks
from mtlvsift.train.config import TrainConfig, mtl_all_config, mtl_config, stilts_config, \
    support_examples_needed, training_pool
READS_SINGLE_RUNS = 2  # the stage of runs that read finished single runs
# Identity fields a run resolves when it starts (the STILTs start model, single runs' scores, the
# data's checksums).
RESOLVED_AT_RUN_TIME = ("start_model", "single_scores", "data_fingerprints")


@dataclass(frozen=True)
class GridRun:
    config: TrainConfig
    stage: int  # 1: reads no other run; 2: reads the single runs in ``needs``
    needs: tuple[str, ...] = ()  # run folders (str) of the single runs it reads
    added: bool = False  # a single run the grid adds because a run of another method reads it

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def run_dir(self) -> str:
        return str(self.config.run_dir)

    @property
    def label(self) -> str:
        c = self.config
        what = {"single": "single", "stilts": "STILTs", "mtl": "MTL", "mtl_all": "MTL_All"}[c.method]
        tasks = c.target + "".join(f" <- {s}" for s in c.support) if c.target else "+".join(c.tasks)
        return f"{what} {tasks} seed {c.seed}"

    def args(self) -> list[str]:
        """The train script and its arguments (without ``accelerate launch``; ``--overwrite``
        too when the grid was given it)."""
        c = self.config
        return run_args(c.as_dict(), overwrite=c.overwrite, retrain_stale=bool(c.retrain_stale))

    def command(self) -> str:
        """The run's shell command (``--overwrite`` too when the grid was given it)."""
        c = self.config
        return run_command(c.as_dict(), [c.seed], overwrite=c.overwrite, retrain_stale=bool(c.retrain_stale))

    def status(self) -> str:
        """``complete`` (a readable result.json), ``partial`` (started, not finished), ``new``, or
        ``changed``: the folder holds a run with other options (``config.json``; e.g. another
        --epochs, which the folder name does not show), which the run itself refuses unless
        --overwrite; ``damaged`` when its config.json cannot be read. A run that reads single
        runs may be ``stale`` (it read another start model or other scores than it would now)
        or ``recheck`` (it is complete, and the single runs it would read are not all finished:
        it is looked at again once they are); ``status_reason`` says why."""
        return self.status_with_reason()[0]

    def status_reason(self) -> str:
        """Why a run is ``stale`` or ``recheck``; empty otherwise."""
        return self.status_with_reason()[1]

    def status_with_reason(self) -> tuple[str, str]:
        folder = RunFolder(self.config.run_dir)
        try:
            stored = folder.stored_identity()
        except MtlvsiftError:
            return "damaged", ""
        if stored is not None and identity_changes(stored, self.config.identity(), RESOLVED_AT_RUN_TIME):
            return "changed", ""
        if stored is not None and self.stage == READS_SINGLE_RUNS:
            staleness = self._staleness(stored)
            if staleness:
                return staleness
        if folder.is_complete():
            try:
                run_record.load(folder.result_file)
                return "complete", ""
            except run_record.InvalidRecord:
                return "partial", ""  # the run itself says what is wrong with it
        return ("partial" if folder.config_file.exists() else "new"), ""

    def _seeds_read(self) -> list[int] | None:
        """The --support-seeds its record says it read (None: not known)."""
        try:
            raw = run_record.load(RunFolder(self.config.run_dir).result_file)
        except run_record.InvalidRecord:
            return None
        source = raw.get("start_model") if self.method == "stilts" else raw.get("single_scores_from")
        seeds = source.get("seeds") if isinstance(source, dict) else None
        ok = isinstance(seeds, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in seeds)
        return seeds if ok else None

    def _staleness(self, stored: dict[str, Any]) -> tuple[str, str] | None:
        """``stale`` or ``recheck`` with the reason, for a run that reads single runs; None when
        what it read is what it would read now."""
        from mtlvsift.train.plan import with_prerequisites  # reads records; no torch

        try:
            resolved = with_prerequisites(self.config).identity()
        except MtlvsiftError:  # single runs it reads are not all finished (this grid trains them)
            if not RunFolder(self.config.run_dir).is_complete():
                return None  # the run resolves them when it starts
            seeds = " ".join(map(str, self.config.support_seeds or ()))
            read = self._seeds_read()
            what = "its start model" if self.method == "stilts" else "its single-task scores"
            how = "the best" if self.method == "stilts" else "the mean"
            was = f" ({how} of seeds {' '.join(map(str, read))})" if read is not None else ""
            return "recheck", (f"kept if {what}{was} stays the same over seeds {seeds}, once "
                               f"their single runs are finished")
        stale = stale_reason(stored, resolved, ("data_fingerprints",))  # the data: checked by the run
        return ("stale", stale) if stale else None


def parse_list(value: str, what: str) -> list[str]:
    """``rte,mrpc`` or ``rte mrpc`` -> ['rte', 'mrpc'], distinct, in order."""
    items = [v for v in value.replace(",", " ").split() if v]
    if not items:
        raise MtlvsiftError(f"--{what} is empty.")
    if len(set(items)) != len(items):
        raise MtlvsiftError(f"--{what} lists something twice: {value}")
    return items


def grid_runs(tasks: list[str], seeds: list[int], methods: list[str], options: dict[str, Any],
              mtl_sampling: str = "dynamic", mtl_all_sampling: str = "size",
              support_ratios: list[float] = (), target_fraction: float | None = None,
              support_seeds: list[int] | None = None) -> list[GridRun]:
    """Every run of the grid, prerequisites first (single runs a STILTs or dynamic run reads are
    added when ``single`` is not among ``methods``); ``options`` are run options (``run_options``)
    given to every run they apply to. ``support_seeds``: the seeds of the single runs that STILTs
    and dynamic sampling read (default ``seeds``; --until-decided's added seeds keep the grid's,
    so that a cell's seeds start from the same model and stay pooled).

    With ``support_ratios`` the STILTs and MTL runs are the size experiment's (Figure 2): every
    ordered pair at every ratio K (``--support-ratio K``, ``--target-fraction``), MTL both ways
    (each direction subsamples another task); STILTs starts from single runs of the supporting
    task capped at K x the target's size, which the grid adds."""
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise MtlvsiftError(f"Unknown --methods {', '.join(sorted(unknown))}: choose from "
                            f"{', '.join(METHODS)}.")
    names = [t.name for t in get_tasks(tasks)]
    if len(names) < 2 and set(methods) - {"single"}:
        raise MtlvsiftError("STILTs, MTL and MTL_All need at least two --tasks.")
    read_seeds = list(seeds if support_seeds is None else support_seeds)
    options = {**options, "support_seeds": tuple(read_seeds)}
    if target_fraction is not None and not support_ratios:
        raise MtlvsiftError("--target-fraction belongs to the size experiment: give --support-ratios too.")
    later: list[TrainConfig] = []
    for seed in seeds:
        each = {**options, "seed": seed}
        mtl = {**each, "sampling": mtl_sampling}
        if support_ratios:
            later += _size_experiment(names, methods, each, mtl, support_ratios, target_fraction)
            continue
        if "stilts" in methods:
            later += [stilts_config(t, s, _own("stilts", each)) for t, s in permutations(names, 2)]
        if "mtl" in methods:
            for a, b in combinations(names, 2):
                target, support = sorted((a, b), key=_size_order)
                later.append(mtl_config(target, (support,), _own("mtl", mtl)))
        if "mtl_all" in methods:
            later.append(mtl_all_config(tuple(names), _own("mtl_all", {**each, "sampling": mtl_all_sampling})))
    caps = {options.get("max_train_examples")}
    caps |= {_support_cap(c) for c in later if c.method == "stilts" and c.support_ratio is not None}
    singles = {(t, cap, seed): stilts_config(t, None, _own("single", {**options, "seed": seed,
                                                                       "max_train_examples": cap}))
               for cap in sorted(caps, key=lambda c: c or 0) for t in names
               for seed in dict.fromkeys([*seeds, *read_seeds])}
    reads = {str(c.run_dir): _single_runs_read(c, options.get("max_train_examples")) for c in later}
    wanted = {key for tasks_read in reads.values() for key in tasks_read}
    base = options.get("max_train_examples")
    runs = [GridRun(config, 1, added="single" not in methods or cap != base)
            for (task, cap, seed), config in singles.items()
            if ("single" in methods and cap == base and seed in seeds)
            or ((task, cap) in wanted and seed in read_seeds)]
    first = [GridRun(c, 1) for c in later if not reads[str(c.run_dir)]]
    second = [GridRun(c, READS_SINGLE_RUNS, tuple(str(singles[t, cap, s].run_dir)
                                                  for t, cap in reads[str(c.run_dir)] for s in read_seeds))
              for c in later if reads[str(c.run_dir)]]
    ordered = runs + _by_method(first) + _by_method(second)
    folders = [r.run_dir for r in ordered]
    if len(set(folders)) != len(folders):  # e.g. a task named twice under different spellings
        raise MtlvsiftError("Two runs of the grid would share a run folder; check --tasks.")
    return ordered


def _own(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """The grid's options that a run of ``method`` takes."""
    return run_options.applicable(method, options)


def _single_runs_read(config: TrainConfig, base_cap: int | None) -> list[tuple[str, int | None]]:
    """(task, --max-train-examples) of the single runs a run reads (its --support-seeds each)."""
    if config.method == "stilts":
        cap = _support_cap(config) if config.support_ratio is not None else base_cap
        return [(config.support[0], cap)]
    if config.sampling == "dynamic":
        return [(t, base_cap) for t in config.tasks]
    return []


def _support_cap(config: TrainConfig) -> int:
    """A size-experiment STILTs run's supporting single runs: K x the target's used size (the
    same draw MTL makes), from the target's training rows (counted, not tokenized)."""
    return support_examples_needed(config, _train_rows(config.target, config.data_dir))


@lru_cache(maxsize=None)
def _train_rows(task: str, data_dir: str | None) -> int:
    from mtlvsift.train.data.glue import resolve_data_dir, train_rows

    return train_rows(get_task(task), resolve_data_dir(data_dir))


def _size_experiment(names: list[str], methods: list[str], each: dict[str, Any], mtl: dict[str, Any],
                     ratios: list[float], fraction: float | None) -> list[TrainConfig]:
    configs = []
    for ratio in ratios:
        size = {"target_fraction": fraction, "support_ratio": ratio}
        for target, support in permutations(names, 2):
            if "stilts" in methods:
                stilts = stilts_config(target, support, _own("stilts", {**each, **size}))
                need, cap = _support_cap(stilts), stilts.max_train_examples
                have = min(training_pool(stilts, support, _train_rows(support, stilts.data_dir)),
                           cap or 10**12)
                if need > have:
                    raise MtlvsiftError(
                        f"--support-ratios {ratio:g}: {get_task(target).display} as target needs "
                        f"{need} {get_task(support).display} training examples ({ratio:g} x the "
                        f"target's), but {have} are available. Use smaller ratios or a smaller "
                        f"--target-fraction.")
                configs.append(stilts)
            if "mtl" in methods:
                configs.append(mtl_config(target, (support,), _own("mtl", {**mtl, **size})))
    return configs


def _size_order(task: str) -> tuple[int, str]:
    """Smaller training set first (a task file's task: by name, after GLUE's sizes)."""
    size = get_task(task).train_size
    return (size if size else 10**12, task)


def _by_method(runs: list[GridRun]) -> list[GridRun]:
    return sorted(runs, key=lambda r: METHODS.index(r.method))
