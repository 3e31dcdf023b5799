"""Which report a run belongs to: one per (model, protocol, data variant).

A record's ``variant`` (its run folder's suffix without the protocol) mixes two kinds of parts:
the data every method of an experiment shares (``n-300`` from ``--max-train-examples 300``,
``ds-1`` from ``--data-seed 1``), and what one method changes (``sampling-uniform``,
``tasks-rte+mrpc``, ``tf-0.5_sr-2``, ...). Runs of the same data variant are compared with each
other, as the default runs are: a mini experiment made entirely with ``--max-train-examples 300``
gets its own matrix, t-tests and tables. Within its report a run's variant is what remains.

Single runs of a data variant that has nothing else (the supporting runs of a size experiment,
``n-<K x target size>``) stay in the default report's "Other runs" when that report exists.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from typing import NamedTuple

from mtlvsift.names import DEFAULT_PROTOCOL
from mtlvsift.run_record import RunRecord

DATA_KEYS = ("n", "ds")  # variant parts every method of an experiment shares
# A task name holds no '-', so '_<key>-' always starts a part (task lists are joined by '+').
_PART = re.compile(r"_(?=[a-z]+-)")


class ReportKey(NamedTuple):
    model: str
    protocol: str
    variant: str  # the data variant: '' (default data), 'n-300', 'n-300_ds-1'

    def label(self) -> str:
        """What tells this report apart from the model's others: 'protocol original, n-300'."""
        parts = [f"protocol {self.protocol}"] if self.protocol != DEFAULT_PROTOCOL else []
        return ", ".join(parts + ([self.variant] if self.variant else []))


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


def report_keys(records: Iterable[RunRecord]) -> list[ReportKey]:
    """Every report the records make: default protocol and data first, then by name."""
    records = list(records)
    keys = {ReportKey(r.model, r.protocol, data_variant(r)) for r in records}
    keys -= {k for k in keys if _folded(records, k)}
    return sorted(keys, key=lambda k: (k.model, k.protocol != DEFAULT_PROTOCOL, k.protocol,
                                       k.variant != "", k.variant))


def report_records(records: Iterable[RunRecord], key: ReportKey) -> list[RunRecord]:
    """The records of one report, each with ``variant`` as seen within it (its data part
    removed); single-only data variants folded into the default report keep their variant."""
    own = [r for r in records if (r.model, r.protocol) == key[:2]]
    chosen = []
    for record in own:
        data, rest = split_variant(record.variant)
        if data == key.variant:
            chosen.append(dataclasses.replace(record, variant=rest))
        elif key.variant == "" and _folded(own, ReportKey(key.model, key.protocol, data)):
            chosen.append(record)
    return chosen


def _folded(records: list[RunRecord], key: ReportKey) -> bool:
    """A data variant of single runs only, next to runs of the default data."""
    if key.variant == "":
        return False
    own = [r for r in records if (r.model, r.protocol) == key[:2]]
    mine = [r for r in own if data_variant(r) == key.variant]
    return all(r.method == "single" for r in mine) and any(data_variant(r) == "" for r in own)
