"""Errors and per-item rejections for data I/O: every problem names its file and entry."""

from __future__ import annotations

from dataclasses import dataclass


class DataError(ValueError):
    """Bad input data. The message names the file and, where there is one, the entry."""

    def __init__(self, message: str, *, file: str | None = None, entry: object = None):
        self.file = file
        self.entry = entry
        where = ""
        if file is not None:
            where += f"{file}"
        if entry is not None:
            where += f" [entry {entry}]"
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class Rejection:
    """An input item that was not loaded in lenient mode, and why."""

    file: str
    entry: object
    reason: str

    def __str__(self) -> str:
        return f"{self.file} [entry {self.entry}]: {self.reason}"


class Collector:
    """Raise on the first problem (strict) or collect it as a ``Rejection`` (lenient)."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.rejections: list[Rejection] = []

    def reject(self, file: str, entry: object, reason: str) -> None:
        if self.strict:
            raise DataError(reason, file=file, entry=entry)
        self.rejections.append(Rejection(file, entry, reason))
