"""JAAS login configuration files, as Java's `-Djava.security.auth.login.config=FILE`
names them.

The syntax (javax.security.auth.login.ConfigFile):

    Server {
        org.apache.zookeeper.server.auth.DigestLoginModule required
        user_bob="bobsecret";
    };

A file holds named sections; a section holds login-module entries, each a class name, a
flag (required, requisite, sufficient, optional), `key=value` options and a `;`.  Values
are words or double-quoted strings; `//` and `/* */` are comments.  Malformed input
raises `JaasError` naming the file and the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

FLAGS = ("required", "requisite", "sufficient", "optional")


class JaasError(ValueError):
    """A JAAS file cannot be read or parsed; the message names the file and line."""


@dataclass(slots=True)
class LoginModule:
    """One entry of a section: `module flag key=value ...;`."""

    module: str
    flag: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = 0


_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\n]+)
      | (?P<line_comment>//[^\n]*)
      | (?P<block_comment>/\*.*?\*/)
      | (?P<open_comment>/\*)
      | (?P<quoted>"(?:[^"\\]|\\.)*")
      | (?P<punct>[{};=])
      | (?P<word>[^\s{};="]+)
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokens(text: str, source: str) -> list[tuple[str, str, int]]:
    """(kind, text, line) for every token: word, quoted (unescaped) or punct."""
    out: list[tuple[str, str, int]] = []
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            what = "unterminated comment" if text.startswith("/*", pos) else \
                "unterminated quoted string" if text[pos] == '"' else f"unexpected {text[pos]!r}"
            raise JaasError(f"{source}:{line}: {what}")
        kind = m.lastgroup or ""
        tok = m.group()
        if kind == "open_comment":
            raise JaasError(f"{source}:{line}: unterminated comment")
        if kind == "quoted":
            out.append(("quoted", re.sub(r"\\(.)", r"\1", tok[1:-1], flags=re.DOTALL), line))
        elif kind in ("punct", "word"):
            out.append((kind, tok, line))
        line += tok.count("\n")
        pos = m.end()
    return out


def parse_jaas(text: str, source: str = "<jaas>") -> dict[str, list[LoginModule]]:
    """Sections by name, each a list of login modules (a repeated name is refused)."""
    toks = _tokens(text, source)
    sections: dict[str, list[LoginModule]] = {}
    i = 0

    def take(expect: str | None = None) -> tuple[str, str, int]:
        nonlocal i
        if i >= len(toks):
            last = toks[-1][2] if toks else 1
            raise JaasError(f"{source}:{last}: unexpected end of file"
                            + (f", expected '{expect}'" if expect else ""))
        tok = toks[i]
        i += 1
        if expect is not None and (tok[0] != "punct" or tok[1] != expect):
            raise JaasError(f"{source}:{tok[2]}: expected '{expect}', found '{tok[1]}'")
        return tok

    while i < len(toks):
        kind, name, line = take()
        if kind != "word":
            raise JaasError(f"{source}:{line}: expected a section name, found '{name}'")
        if name in sections:
            raise JaasError(f"{source}:{line}: section '{name}' appears twice")
        take("{")
        modules: list[LoginModule] = []
        while True:
            kind, text, line = take()
            if kind == "punct" and text == "}":
                break
            if kind != "word":
                raise JaasError(f"{source}:{line}: expected a login module class name, found '{text}'")
            fkind, flag, fline = take()
            if fkind != "word" or flag.lower() not in FLAGS:
                raise JaasError(f"{source}:{fline}: login module {text}: expected a flag "
                                f"({', '.join(FLAGS)}), found '{flag}'")
            entry = LoginModule(text, flag.lower(), {}, line)
            while True:
                okind, key, oline = take()
                if okind == "punct" and key == ";":
                    break
                if okind != "word":
                    raise JaasError(f"{source}:{oline}: expected an option name or ';', found '{key}'")
                take("=")
                vkind, value, vline = take()
                if vkind == "punct":
                    raise JaasError(f"{source}:{vline}: option {key}: expected a value, found '{value}'")
                entry.options[key] = value
            modules.append(entry)
        take(";")
        if not modules:
            raise JaasError(f"{source}:{line}: section '{name}' has no login module")
        sections[name] = modules
    return sections


def load_jaas(path: str | Path) -> dict[str, list[LoginModule]]:
    """Read and parse a JAAS file (JaasError if it cannot be read or is malformed)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise JaasError(f"{path}: cannot read JAAS file: {getattr(e, 'strerror', None) or e}") from None
    return parse_jaas(text, str(path))
