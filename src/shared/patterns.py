"""Which expired keys the fleet handles: Redis glob patterns (``KEY_PATTERNS``) as one regex."""

from __future__ import annotations

import re
from collections.abc import Sequence

from shared.names import INTERNAL_PREFIXES, MAX_KEY_BYTES

_INTERNAL = tuple(prefix.encode() for prefix in INTERNAL_PREFIXES)


class PatternError(ValueError):
    """A key pattern Redis would not understand the way it reads."""


def glob_to_regex(pattern: str) -> str:
    """The regular expression matching exactly the names Redis's glob ``pattern`` matches.

    Redis globs: ``*`` any run of characters, ``?`` one character, ``[abc]``, ``[a-z]`` and
    ``[^a]`` classes, and ``\\`` escaping the next character.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("^", "]") else i + 1)
            if end < 0:
                raise PatternError(f"{pattern!r} has an unclosed '['")
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            if negate:
                body = body[1:]
            members = "".join(
                "-" if ch == "-" and 0 < k < len(body) - 1 else re.escape(ch)
                for k, ch in enumerate(body)
            )
            out.append(f"[{'^' if negate else ''}{members}]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class KeyPatterns:
    """A set of Redis glob patterns, matched against raw key names (bytes) or str."""

    def __init__(self, patterns: Sequence[str]) -> None:
        if not patterns:
            raise PatternError("at least one pattern is needed")
        self.patterns = tuple(patterns)
        regex = "|".join(f"(?:{glob_to_regex(p)})" for p in patterns)
        try:
            self._bytes = re.compile(f"(?s:{regex})\\Z".encode())
            self._text = re.compile(f"(?s:{regex})\\Z")
        except re.error as exc:
            raise PatternError(f"{', '.join(patterns)}: {exc}") from None

    def matches(self, key: str) -> bool:
        """Whether ``key`` matches one of the patterns."""
        return self._text.match(key) is not None and not key.startswith(INTERNAL_PREFIXES)

    def select(self, payloads: Sequence[bytes]) -> list[str]:
        """The names among ``payloads`` that match, decoded.

        The pipeline's own keys never match (their expiries are not an application's); names
        that are not UTF-8, or longer than ``MAX_KEY_BYTES``, are skipped: a message could not
        carry them faithfully.
        """
        match = self._bytes.match
        selected = []
        for payload in payloads:
            if (
                len(payload) > MAX_KEY_BYTES
                or match(payload) is None
                or payload.startswith(_INTERNAL)
            ):
                continue
            try:
                selected.append(payload.decode())
            except UnicodeDecodeError:
                continue
        return selected

    def select_events(
        self, heard: Sequence[tuple[bytes, bytes]], events: frozenset[bytes]
    ) -> list[tuple[str, str]]:
        """The ``(event, key)`` pairs among ``heard`` whose event is one of ``events`` and whose
        key ``select`` would keep, decoded, in the order heard."""
        wanted = [(event, key) for event, key in heard if event in events]
        keys = self.select([key for _, key in wanted])
        if len(keys) == len(wanted):
            return [(event.decode(), key) for (event, _), key in zip(wanted, keys, strict=True)]
        kept = set(keys)
        selected = []
        for event, raw in wanted:
            try:
                key = raw.decode()
            except UnicodeDecodeError:
                continue
            if key in kept:
                selected.append((event.decode(), key))
        return selected

    def __repr__(self) -> str:
        return f"KeyPatterns({', '.join(self.patterns)})"
