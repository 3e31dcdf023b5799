"""Values from records and the file system, made safe to show: a run folder's name or a record's
field may hold ESC sequences, carriage returns or bells that would rewrite the terminal, or rich
markup. Used by both programs (the trainer and the report); imports neither torch nor
transformers.
"""

from __future__ import annotations

from rich.markup import escape


def safe_text(value: object, keep_lines: bool = False) -> str:
    """``str(value)`` with every non-printable character (ESC, ``\\r``, BEL, ``\\n`` unless
    ``keep_lines``, Unicode format characters such as bidi overrides) written as its escape,
    e.g. ``\\x1b``. Printable text, backslashes included, is unchanged, so applying it twice
    changes nothing more."""
    text = str(value)
    if keep_lines:
        return "\n".join(safe_text(line) for line in text.split("\n"))
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def safe_markup(value: object, keep_lines: bool = False) -> str:
    """``safe_text`` with rich markup escaped too: for text inside a rich ``console.print``."""
    return escape(safe_text(value, keep_lines))
