"""Which report a run belongs to: one per (model, protocol, data variant, settings).

A record's ``variant`` (its run folder's suffix without the protocol) mixes two kinds of parts:
the data every method of an experiment shares (``n-300`` from ``--max-train-examples 300``,
``ds-1`` from ``--data-seed 1``, ``select-holdout`` from ``--select-on holdout``), and what one method changes (``sampling-uniform``,
``tasks-rte+mrpc``, ``tf-0.5_sr-2``, ...). Runs of the same data variant are compared with each
other, as the default runs are: a mini experiment made entirely with ``--max-train-examples 300``
gets its own matrix, t-tests and tables. Within its report a run's variant is what remains.

Runs whose settings differ (``SETTINGS``: the identity options every run has that no folder name
shows, ``--epochs``, ``--lr``, ...) are never pooled either: within one model, protocol and data
variant, the settings most runs share make the report, and runs of other settings make reports of
their own, labelled by the options in which they differ (``epochs 1, eval-every 1.0``).

Pairwise MTL runs whose variant says only how MTL trained (``MTL_KEYS``: ``sampling-uniform``,
``epoch-target``, ``passes-3``, ...; a grid's ``--mtl-sampling``, ``--mtl-epoch``, ...) make a
matrix of their own (``ReportKey.mtl``) against the same STILTs, single and MTL_All runs, which
then appear in each such report; the default report stays when default MTL runs exist (or none
of these).

Single runs of a data variant that has nothing else are no report of their own: the supporting
runs of a size experiment (``n-<K x target size>``) belong to the report whose STILTs runs started
from them, others to the default data's report ("Other runs") when that report exists.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from mtlvsift.names import DEFAULT_PROTOCOL, METHODS
from mtlvsift.run_options import OPTIONS, option
from mtlvsift.run_record import RunRecord

# Variant parts every method of an experiment shares: the data (``n``, ``ds``) and the split the
# checkpoints are selected on (``select-holdout``, ``ho``): each selection mode is its own report.
DATA_KEYS = ("n", "ds", "select", "ho")
SELECTION_KEYS = ("select", "ho")
# A task name holds no '-', so '_<key>-' always starts a part (task lists are joined by '+').
_PART = re.compile(r"_(?=[a-z]+-)")
# The identity options every run has and no folder name shows: runs that differ in one are never
# pooled (the model has its own report; the seed is what is pooled over).
SETTINGS = tuple(o.name for o in OPTIONS if o.identity and set(o.methods) == set(METHODS)
                 and o.when is None and not o.suffix and o.name not in ("model", "seed"))
Settings = tuple[tuple[str, Any], ...]  # ((option name, value), ...)
# The variant parts of options that only shape multi-task training (its sampling, batches,
# epochs, caps): a pairwise MTL configuration.
MTL_KEYS = tuple(o.suffix for o in OPTIONS if o.suffix and set(o.methods) <= {"mtl", "mtl_all"})


class ReportKey(NamedTuple):
    model: str
    protocol: str
    variant: str  # the data variant: '' (default data), 'n-300', 'n-300_ds-1'
    # The settings in which its runs differ from those most runs of the same model, protocol and
    # data variant share (their values); () for that main report.
    settings: Settings = ()
    mtl: str = ""  # the pairwise MTL configuration of its matrix ('epoch-target'); '' the default

    def label(self) -> str:
        """What tells this report apart from the model's others: 'protocol original, n-300',
        'n-300, epochs 1, eval-every 1.0', 'MTL sampling-uniform epoch-target'."""
        parts = [f"protocol {self.protocol}"] if self.protocol != DEFAULT_PROTOCOL else []
        parts += [self.variant] if self.variant else []
        parts += [f"MTL {self.mtl.replace('_', ' ')}"] if self.mtl else []
        return ", ".join(parts + [f"{_flag(n)} {_value_text(v)}" for n, v in self.settings])

    def settings_slug(self) -> str:
        """The settings as a folder name's part: 'epochs-1_eval-every-1.0'."""
        return "_".join(f"{_flag(n)}-{_value_text(v)}" for n, v in self.settings)

    def variant_slug(self) -> str:
        """What follows the model and protocol in the report's folder name: the data variant,
        the MTL configuration ('mtl-epoch-target'), the settings."""
        return "_".join(filter(None, (self.variant, self.mtl and f"mtl-{self.mtl}", self.settings_slug())))


def _flag(name: str) -> str:
    return option(name).flag.split("/")[0].lstrip("-")


def _value_text(value: Any) -> str:
    """A setting's value as a label shows it: exact floats (repr), on/off for a flag."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if isinstance(value, float) else str(value)


def settings_of(record: RunRecord) -> Settings:
    """The record's value of every setting: as its options give it, else the default."""
    return tuple((name, record.options.get(name, option(name).default_for(record.method)))
                 for name in SETTINGS)


def variant_parts(variant: str) -> list[str]:
    """'tasks-rte+my_task_n-300' -> ['tasks-rte+my_task', 'n-300']."""
    return [p for p in _PART.split(variant) if p] if variant else []


def split_variant(variant: str) -> tuple[str, str]:
    """'tasks-rte+mrpc_n-300' -> ('n-300', 'tasks-rte+mrpc'): the data part, then the rest."""
    parts = variant_parts(variant)
    data = [p for p in parts if p.split("-", 1)[0] in DATA_KEYS]
    return "_".join(data), "_".join(p for p in parts if p not in data)


def data_variant(record: RunRecord) -> str:
    return split_variant(record.variant)[0]


def mtl_configuration(record: RunRecord) -> str | None:
    """A pairwise MTL run's configuration when its variant (its data part aside) says only how
    MTL trained ('sampling-uniform_epoch-target'), else None (the default, a size experiment,
    several supports, another variant)."""
    if record.method != "mtl" or len(record.support) != 1 or record.is_size_experiment:
        return None
    rest = split_variant(record.variant)[1]
    parts = variant_parts(rest)
    return rest if parts and all(p.split("-", 1)[0] in MTL_KEYS for p in parts) else None


def report_keys(records: Iterable[RunRecord]) -> list[ReportKey]:
    """Every report the records make: default protocol, data and settings first, then by name."""
    records = list(records)
    report_of = _report_of(records)
    keys = set()
    for base in set(report_of.values()):
        mine = [r for r in records if report_of[id(r)] == base]
        configurations = {mtl_configuration(r) for r in mine} - {None}
        keys |= {base._replace(mtl=c) for c in configurations}
        if not configurations or any(r.method == "mtl" and mtl_configuration(r) is None for r in mine):
            keys.add(base)
    return sorted(keys, key=lambda k: (k.model, k.protocol != DEFAULT_PROTOCOL, k.protocol,
                                       k.variant != "", k.variant, k.mtl != "", k.mtl,
                                       k.settings != (), k.settings_slug()))


def report_records(records: Iterable[RunRecord], key: ReportKey) -> list[RunRecord]:
    """The records of one report, each with ``variant`` as seen within it (its data part and,
    in an MTL configuration's report, its MTL runs' configuration removed); single runs folded
    in from another data variant keep their variant. An MTL configuration's report holds the
    runs of every other method, and the MTL runs of that configuration only."""
    records = [r for r in records if (r.model, r.protocol) == key[:2]]
    report_of = _report_of(records)
    base = key._replace(mtl="")
    chosen = []
    for record in records:
        configuration = mtl_configuration(record)
        if report_of[id(record)] != base or (record.method == "mtl" and configuration != (key.mtl or None)):
            continue
        data, rest = split_variant(record.variant)
        rest = "" if configuration and key.mtl else rest  # the configuration is the report's
        inside = dataclasses.replace(record, variant=rest) if data == key.variant else record
        chosen.append(inside)
    return chosen


def _report_of(records: list[RunRecord]) -> dict[int, ReportKey]:
    """Each record's report, by ``id``."""
    by_data: dict[tuple, list[RunRecord]] = {}
    for record in records:
        by_data.setdefault((record.model, record.protocol, data_variant(record)), []).append(record)
    report_of: dict[int, ReportKey] = {}
    for data, mine in by_data.items():
        main = Counter(map(settings_of, mine)).most_common(1)[0][0]
        for record in mine:
            differs = tuple(s for s, m in zip(settings_of(record), main) if s != m)
            report_of[id(record)] = ReportKey(*data, differs)
    reports: dict[ReportKey, list[RunRecord]] = {}
    for record in records:
        reports.setdefault(report_of[id(record)], []).append(record)
    for key, mine in reports.items():
        into = _folded_into(key, mine, reports) if all(r.method == "single" for r in mine) else None
        for record in mine if into else []:
            report_of[id(record)] = into
    return report_of


def _folded_into(key: ReportKey, singles: list[RunRecord],
                 reports: dict[ReportKey, list[RunRecord]]) -> ReportKey | None:
    """The report that a report of single runs only belongs to: of the same settings and another
    data variant, the one whose STILTs runs started from one of them (a size experiment's
    supporting runs), else the default data's; None when it is a report of its own."""
    folders = [r.folder.parts for r in singles]
    # Never into a report of the other selection mode: its scores were selected otherwise.
    others = [k for k, rs in reports.items() if k[:2] == key[:2] and k.variant != key.variant
              and settings_of(rs[0]) == settings_of(singles[0])
              and _selection_parts(k.variant) == _selection_parts(key.variant)]
    started = [k for k in others if any(_started_from(r, folders) for r in reports[k])]
    default = [k for k in others if k.variant == ""]
    return next(iter(started or default), None)


def _selection_parts(variant: str) -> list[str]:
    """'n-300_select-holdout_ho-0.2' -> ['select-holdout', 'ho-0.2'] ([] for dev, the paper's)."""
    return [p for p in variant_parts(variant) if p.split("-", 1)[0] in SELECTION_KEYS]


def _started_from(record: RunRecord, folders: list[tuple[str, ...]]) -> bool:
    """Whether a STILTs record's start model is one of ``folders`` (its ``run`` is relative to
    the outputs: the folders' last parts)."""
    run = Path(record.start_model["run"]).parts if record.start_model else ()
    return bool(run) and any(folder[-len(run):] == run for folder in folders)
