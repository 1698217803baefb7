"""Splitting a zkCli command line into words and parsing a command's flags.

Both follow zkCli.sh 3.8 exactly: words are split with ZooKeeperMain's ARGS_PATTERN
(quotes only group when they open a word), and flags are parsed like Apache Commons
CLI's DefaultParser (flags anywhere among the arguments, `-v5` and `-v 5`, bundled
`-sw`, `--` ends the flags, a negative number is a flag's value but not a flag).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ARGS = re.compile(r"""\s*([^"']\S*|"[^"]*"|'[^']*')\s*""")
_QUOTED = re.compile(r"""^(['"])(.*)(\1)$""", re.S)
_NEGATIVE_NUMBER = re.compile(r"^-\d+(\.\d+)?$")


def split_line(line: str) -> list[str]:
    """'create /a "b c"' -> ['create', '/a', 'b c'] (zkCli's word splitting)."""
    words = []
    for m in _ARGS.finditer(line):
        word = m.group(1)
        q = _QUOTED.match(word)
        words.append(q.group(2) if q else word)
    return words


class CliError(Exception):
    """A command failed; `message` is what zkCli prints on stderr, `exit_code` its exit status."""

    def __init__(self, message: str, exit_code: int = 1, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code


class ParseError(CliError):
    """A command line that does not match the command's flags (commons-cli's messages)."""


@dataclass(frozen=True)
class Flag:
    """A command's option: `-name`, with a value when `takes_value`."""

    name: str
    takes_value: bool = False
    description: str = ""


@dataclass
class Parsed:
    """Flags given (value or True) and the remaining words, the command name first."""

    flags: dict[str, str | bool] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)

    def has(self, name: str) -> bool:
        return name in self.flags

    def value(self, name: str) -> str:
        v = self.flags[name]
        return v if isinstance(v, str) else ""


def parse_flags(words: list[str], flags: list[Flag], exclusive: bool = False) -> Parsed:
    """Parse `words` (command name first) against `flags`.

    `exclusive` makes the flags one option group: giving two of them is an error, as in
    setquota/delquota.
    """
    known = {f.name: f for f in flags}
    out = Parsed(args=[words[0]] if words else [])
    pending: Flag | None = None
    only_args = False
    for word in words[1:]:
        if only_args:
            out.args.append(word)
        elif word == "--":
            only_args = True
        elif pending is not None and (not _is_flag(word, known) or _NEGATIVE_NUMBER.match(word)):
            _set(out, pending, _unquote(word), exclusive)
            pending = None
        elif word.startswith("-") and word != "-":
            _missing(pending)
            pending = _flag_word(out, word, known, exclusive)
        else:
            _missing(pending)
            out.args.append(word)
    _missing(pending)
    return out


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _is_flag(word: str, known: dict[str, Flag]) -> bool:
    if not word.startswith("-") or len(word) == 1:
        return False
    name = word[1:].split("=", 1)[0]
    return name in known or (bool(name) and name[0] in known)


def _missing(pending: Flag | None) -> None:
    if pending is not None:
        raise ParseError("org.apache.commons.cli.MissingArgumentException: "
                         f"Missing argument for option: {pending.name}")


def _unrecognized(word: str) -> ParseError:
    return ParseError(f"org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: {word}")


def _flag_word(out: Parsed, word: str, known: dict[str, Flag], exclusive: bool) -> Flag | None:
    """Handle '-x', '-xVALUE' or '-xyz'; return a flag still waiting for its value."""
    token = word[1:]
    if token in known:
        f = known[token]
        if f.takes_value:
            return f
        _set(out, f, True, exclusive)
        return None
    if len(token) == 1 or token.startswith("-"):
        raise _unrecognized(word)
    first = known.get(token[0])
    if first is not None and first.takes_value:
        _set(out, first, token[1:], exclusive)
        return None
    for i, ch in enumerate(token):
        bundled = known.get(ch)
        if bundled is None:
            raise _unrecognized(word)
        if bundled.takes_value:
            if i + 1 < len(token):
                _set(out, bundled, token[i + 1:], exclusive)
                return None
            return bundled
        _set(out, bundled, True, exclusive)
    return None


def _set(out: Parsed, f: Flag, value: str | bool, exclusive: bool) -> None:
    if exclusive:
        other = next((g for g in out.flags if g != f.name), None)
        if other is not None:
            raise ParseError(
                f"org.apache.commons.cli.AlreadySelectedException: The option '{f.name}' was specified "
                f"but an option from this group has already been selected: '{other}'")
    if f.name not in out.flags:
        out.flags[f.name] = value


def group_description(flags: list[Flag]) -> str:
    """How commons-cli names a required option group in MissingOptionException."""
    return "[" + ", ".join(f"-{f.name} {f.description}" for f in flags) + "]"


class UsageError(CliError):
    """The command's arguments are wrong; reported as the command's usage line."""

    def __init__(self) -> None:
        super().__init__("", 1, "USAGE")


class Reported(CliError):
    """A failure that has already been reported (by a command run from `redo`)."""

    def __init__(self, exit_code: int) -> None:
        super().__init__("", exit_code, "REPORTED")
