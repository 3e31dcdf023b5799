"""Property test: random TSV content either loads exactly or fails with the file and the line.

An independent oracle (plain ``str.split``, no csv module) predicts, line by line, what
``load_split`` must do with the bytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlvsift.train.data.glue import load_split
from mtlvsift.errors import DataError
from mtlvsift.tasks import Task, get_task

# Text without the characters that delimit TSV lines and fields (NUL is left out because csv
# rejects it before Python 3.11); quotes, spaces and non-ASCII characters stay in.
TEXT = st.one_of(
    st.text(alphabet=st.characters(exclude_characters="\t\n\r\x00", exclude_categories=("Cs",)),
            max_size=8),
    st.sampled_from(['"', '" quoted', 'say "hi"', "'", '""', " ", "\ufeff", "é 中"]),
)
BAD_BYTES = st.sampled_from([b"\xff", b"\xe9", b"\xc3(", b"\xed\xa0\x80", b"\xe2\x82"])
RTE_HEADER = ["index", "sentence1", "sentence2", "label"]


def lines(labels: tuple[str, ...], label_at: int) -> st.SearchStrategy[list[bytes]]:
    """Valid rows and blank lines, and in about half the cases one faulty line among them."""

    def row(fields: list[str], label: str) -> bytes:
        fields = fields[:label_at] + [label] + fields[label_at:]
        return "\t".join(fields).encode()

    valid = st.builds(row, st.lists(TEXT, min_size=3, max_size=3), st.sampled_from(labels))
    bad_label = st.builds(row, st.lists(TEXT, min_size=3, max_size=3), TEXT)
    wrong_count = st.lists(TEXT, min_size=0, max_size=7).filter(lambda f: len(f) != 4).map(
        lambda f: "\t".join(f).encode())
    not_utf8 = st.builds(lambda line, bad, at: line[:at] + bad + line[at:], valid, BAD_BYTES,
                         st.integers(0, 20))
    fault = st.one_of(bad_label, wrong_count, not_utf8)
    good = st.lists(st.one_of(valid, valid, valid, st.just(b"")), max_size=8)

    def insert(good: list[bytes], extra: tuple[int, bytes] | None) -> list[bytes]:
        if extra is None:
            return good
        at, line = extra
        return good[: at % (len(good) + 1)] + [line] + good[at % (len(good) + 1):]

    return st.builds(insert, good, st.none() | st.tuples(st.integers(0, 8), fault))


def oracle(task: Task, content: bytes) -> tuple[list[tuple[list[str], float]] | None, int | None]:
    """(rows as (texts, label), None), or (None, the faulty line; None for a whole-file fault)."""
    seen = False
    text_idx: list[int] = []
    label_idx = 0
    width = 4
    out: list[tuple[list[str], float]] = []
    raw_lines = content.split(b"\n")
    if raw_lines[-1] == b"":  # the final newline ends the last line; it does not start a new one
        raw_lines.pop()
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            return None, number
        if line == "":
            continue
        fields = line.split("\t")
        if not seen:
            seen = True
            if task.has_header:
                needed = [*task.text_columns, task.label_column]
                if any(name not in fields for name in needed):
                    return None, number
                width = len(fields)
                text_idx = [fields.index(c) for c in task.text_columns]
                label_idx = fields.index(task.label_column)
                continue
            text_idx, label_idx = list(task.text_columns), int(task.label_column)
        if len(fields) != width or fields[label_idx] not in task.label_names:
            return None, number
        label = float(task.label_names.index(fields[label_idx]))
        out.append(([fields[i] for i in text_idx], label))
    if not out:
        return None, None
    return out, None


def check(task: Task, content: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / task.folder / "train.tsv"
        path.parent.mkdir()
        path.write_bytes(content)
        expected, bad_line = oracle(task, content)
        try:
            ds = load_split(task, "train", Path(tmp))
        except DataError as exc:
            assert expected is None, f"unexpected error: {exc.message}"
            assert str(path) in exc.message and exc.line == bad_line, exc.message
            if bad_line is not None:
                assert f"line {bad_line}:" in exc.message
            return
        assert expected is not None, f"should have failed at line {bad_line}"
        assert len(ds) == len(expected)
        texts = ["text_a", "text_b"][: len(task.text_columns)]
        assert [[r[t] for t in texts] for r in ds] == [e[0] for e in expected]
        assert ds["label"] == [e[1] for e in expected]


def assemble(header: list[bytes], lines: list[bytes], final_newline: bool, bom: bool) -> bytes:
    content = b"\n".join(header + lines) + (b"\n" if final_newline and (header or lines) else b"")
    return (b"\xef\xbb\xbf" if bom else b"") + content


FUZZ = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HEADERS = st.sampled_from([
    RTE_HEADER, RTE_HEADER, RTE_HEADER,
    ["sentence2", "label", "index", "sentence1"],  # any column order works by name
    ["index", "sentence1", "label"],  # lacks sentence2
    [],  # no header line at all
])


@FUZZ
@given(header=HEADERS, data=st.data(), final_newline=st.booleans(), bom=st.booleans())
def test_headered_pair_task(header, data, final_newline, bom):
    label_at = header.index("label") if "label" in header else 3
    body = data.draw(lines(("entailment", "not_entailment"), label_at))
    head = [("\t".join(header)).encode()] if header else []
    check(get_task("rte"), assemble(head, body, final_newline, bom))


@FUZZ
@given(body=lines(("0", "1"), 1), final_newline=st.booleans())
def test_headerless_cola(body, final_newline):
    check(get_task("cola"), assemble([], body, final_newline, bom=False))
