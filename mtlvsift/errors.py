"""The project's own errors: one clear message for the user, shown by click without a traceback."""

from __future__ import annotations

from pathlib import Path

import click

from mtlvsift.display import safe_text


class MtlvsiftError(click.ClickException):
    """A mistake the user can fix (bad option, missing file, missing prerequisite run).

    Being a ``click.ClickException``, it prints ``Error: <message>`` and exits with status 1.
    """

    exit_code = 1

    def format_message(self) -> str:
        # Paths and record fields in the message may hold ESC sequences: shown escaped.
        return safe_text(self.message, keep_lines=True)


class DataError(MtlvsiftError):
    """A data file that cannot be read: names the file and, where known, the line."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}" + (f", line {line}" if line is not None else "") + ": "
        super().__init__(where + message)
