"""Reading a user's text file with one-line errors.

Every loader that takes a user file (GLUE TSV, SQuAD JSON, a user dataset, a text corpus) reads it
through `read_text`, so a missing, empty or non-UTF-8 file gives the same kind of message: it names
the file (and for bad bytes the line) and says what to do.
"""

from __future__ import annotations

from pathlib import Path

from elasticlm.errors import ElasticLMError


def read_text(path: str | Path, *, allow_empty: bool = False) -> str:
    """The whole file decoded as UTF-8 (a leading byte-order mark is dropped).

    Raises `ElasticLMError` when the file is missing, empty (unless `allow_empty`) or not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise ElasticLMError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ElasticLMError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} on line {line}); "
            f"re-save the file as UTF-8"
        ) from None
    if not allow_empty and not text.strip():
        raise ElasticLMError(f"{path}: file is empty")
    return text


def read_lines(path: str | Path) -> list[str]:
    """The file's lines (UTF-8, `\\n` or `\\r\\n` endings; a final empty line dropped).

    Unlike `str.splitlines`, only newlines end a line, so text holding other Unicode line
    separators (U+2028, form feeds) stays in one row.
    """
    lines = [line.removesuffix("\r") for line in read_text(path).split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines
