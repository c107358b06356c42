"""The kinds of error a user can meet, kept apart (see docs/architecture.md, Contracts).

* :class:`InputError` — invalid input, decidable from the files alone: exit code 2. It names
  the file, the line, the key path, the bad value and what would be valid.
* An infeasible plan is *not* an exception: it is a Result with ``feasible: false`` (exit 3).
* Anything else that escapes is a bug: exit code 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path


@dataclass(frozen=True)
class Location:
    """Where a value sits: a file (or a label such as ``<--set>``), a 1-based line, a key path."""

    file: str | None = None
    line: int | None = None
    key_path: str | None = None

    def prefix(self) -> str:
        """``file:line: key.path: `` — the parts that are known, in that order."""
        parts: list[str] = []
        if self.file is not None:
            parts.append(f"{self.file}:{self.line}" if self.line is not None else self.file)
        if self.key_path:
            parts.append(self.key_path)
        return "".join(f"{p}: " for p in parts)


class InputError(Exception):
    """Invalid input: one clear message, exit code 2, never a traceback."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        key_path: str | None = None,
    ) -> None:
        self.location = Location(str(file) if file is not None else None, line, key_path)
        self.detail = message
        super().__init__(self.location.prefix() + message)

    def at(
        self,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        key_path: str | None = None,
    ) -> InputError:
        """The same error with the location filled in where it was missing."""
        loc = self.location
        return InputError(
            self.detail,
            file=loc.file if loc.file is not None else file,
            line=loc.line if loc.line is not None else line,
            key_path=loc.key_path if loc.key_path else key_path,
        )


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a close match exists, else an empty string."""
    match = get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def one_of(choices: Iterable[str]) -> str:
    """Human list of valid choices: ``one of: a, b, c``."""
    return "one of: " + ", ".join(sorted(choices))
