"""Strict readers for the two EMQX files `devstack.broker_emqx` writes, since no HOCON or
Erlang reader is installed (EMQX itself is not either):

- `parse_hocon`: the subset of HOCON that emqx.conf uses (objects, dotted keys, `=`/`:`,
  quoted and unquoted strings, numbers, booleans, lists, `#` and `//` comments). Anything
  else (substitutions, includes, concatenations, a key set twice) is refused, so a file it
  accepts is valid HOCON with one meaning.
- `parse_erlang_terms`: what `file:consult/1` reads from acl.conf: terms each ended by a
  `.`, made of atoms, strings, integers, tuples and lists, with `%` comments.

Both raise `SyntaxError` naming the line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TypeAlias

# ----------------------------------------------------------------------------- HOCON

HoconValue: TypeAlias = "str | int | bool | list[HoconValue] | dict[str, HoconValue]"

_HOCON_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r]+)
      | (?P<comment>(?:\#|//)[^\n]*)
      | (?P<nl>\n)
      | (?P<string>"(?:[^"\\\n]|\\.)*")
      | (?P<punct>[{}\[\]=:,])
      | (?P<word>[^\s"{}\[\]=:,\#$+`^?!@*&\\]+)
    """,
    re.VERBOSE,
)


@dataclass
class _Tok:
    kind: str
    text: str
    line: int


def _hocon_tokens(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos, line = 0, 1
    while pos < len(text):
        m = _HOCON_TOKEN.match(text, pos)
        if m is None:
            raise SyntaxError(f"line {line}: unexpected {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind == "word" and "//" in m.group():
            raise SyntaxError(f"line {line}: '//' inside an unquoted string")
        if kind not in ("ws", "comment"):
            tokens.append(_Tok(kind, m.group(), line))
        line += m.group().count("\n")
        pos = m.end()
    tokens.append(_Tok("eof", "", line))
    return tokens


class _HoconParser:
    def __init__(self, text: str) -> None:
        self.toks = _hocon_tokens(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, kind: str, text: str | None = None) -> _Tok:
        tok = self.peek()
        if tok.kind != kind or (text is not None and tok.text != text):
            raise SyntaxError(f"line {tok.line}: expected {text or kind}, got {tok.text!r}")
        self.i += 1
        return tok

    def skip_newlines(self) -> None:
        while self.peek().kind == "nl":
            self.i += 1

    def members(self, closing: str | None) -> dict[str, HoconValue]:
        obj: dict[str, HoconValue] = {}
        while True:
            self.skip_newlines()
            tok = self.peek()
            closes = tok.kind == "punct" and tok.text == closing
            if closes or (closing is None and tok.kind == "eof"):
                return obj
            path = self.key()
            nxt = self.peek()
            if nxt.kind == "punct" and nxt.text == "{":
                self.i += 1
                value: HoconValue = self.members("}")
                self.take("punct", "}")
            else:
                if not (nxt.kind == "punct" and nxt.text in "=:"):
                    raise SyntaxError(f"line {nxt.line}: expected = or {{ after a key")
                self.i += 1
                value = self.value()
            _set(obj, path, value, tok.line)
            end = self.peek()
            if end.kind == "punct" and end.text == ",":
                self.i += 1
            elif end.kind not in ("nl", "eof") and (end.kind, end.text) != ("punct", closing):
                raise SyntaxError(f"line {end.line}: one value per key ({end.text!r} follows)")

    def key(self) -> list[str]:
        tok = self.peek()
        if tok.kind == "string":
            self.i += 1
            return [json.loads(tok.text)]
        word = self.take("word").text
        parts = word.split(".")
        if any(not p for p in parts):
            raise SyntaxError(f"line {tok.line}: bad key {word!r}")
        return parts

    def value(self) -> HoconValue:
        tok = self.peek()
        self.i += 1
        if tok.kind == "string":
            return str(json.loads(tok.text))
        if tok.kind == "word":
            if tok.text in ("true", "false"):
                return tok.text == "true"
            return int(tok.text) if re.fullmatch(r"-?\d+", tok.text) else tok.text
        if tok.kind == "punct" and tok.text == "{":
            obj = self.members("}")
            self.take("punct", "}")
            return obj
        if tok.kind == "punct" and tok.text == "[":
            items: list[HoconValue] = []
            while True:
                self.skip_newlines()
                if self.peek().kind == "punct" and self.peek().text == "]":
                    self.i += 1
                    return items
                items.append(self.value())
                self.skip_newlines()
                if self.peek().kind == "punct" and self.peek().text == ",":
                    self.i += 1
        raise SyntaxError(f"line {tok.line}: expected a value, got {tok.text!r}")


def _set(obj: dict[str, HoconValue], path: list[str], value: HoconValue, line: int) -> None:
    for part in path[:-1]:
        inner = obj.setdefault(part, {})
        if not isinstance(inner, dict):
            raise SyntaxError(f"line {line}: {part!r} is not an object")
        obj = inner
    last = path[-1]
    old = obj.get(last)
    if isinstance(old, dict) and isinstance(value, dict):
        for k, v in value.items():  # HOCON merges objects given twice
            _set(old, [k], v, line)
    elif last in obj:
        raise SyntaxError(f"line {line}: {'.'.join(path)} is set twice")
    else:
        obj[last] = value


def parse_hocon(text: str) -> dict[str, HoconValue]:
    parser = _HoconParser(text)
    result = parser.members(None)
    parser.take("eof")
    return result


def hocon_get(tree: dict[str, HoconValue], path: str) -> HoconValue:
    """`tree["a"]["b"]` for `a.b`; KeyError naming the path when absent."""
    node: HoconValue = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


# ----------------------------------------------------------------------------- Erlang


@dataclass(frozen=True)
class Atom:
    name: str


ErlTerm: TypeAlias = "Atom | str | int | tuple[ErlTerm, ...] | list[ErlTerm]"

_ERL_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<comment>%[^\n]*)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<qatom>'(?:[^'\\]|\\.)*')
      | (?P<atom>[a-z][A-Za-z0-9_@]*)
      | (?P<int>-?\d+)
      | (?P<end>\.(?=\s|%|$))
      | (?P<punct>[{}\[\],])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def _unescape(body: str, line: int) -> str:
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise SyntaxError(f"line {line}: escape \\{nxt} not supported")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_erlang_terms(text: str) -> list[ErlTerm]:
    """The terms of a `file:consult/1` file, in order."""
    toks: list[tuple[str, str, int]] = []
    pos, line = 0, 1
    while pos < len(text):
        m = _ERL_TOKEN.match(text, pos)
        if m is None:
            raise SyntaxError(f"line {line}: unexpected {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind not in ("ws", "comment"):
            toks.append((kind, m.group(), line))
        line += m.group().count("\n")
        pos = m.end()
    toks.append(("eof", "", line))
    i = 0

    def term() -> ErlTerm:
        nonlocal i
        kind, tok, ln = toks[i]
        i += 1
        if kind == "string":
            return _unescape(tok[1:-1], ln)
        if kind == "qatom":
            return Atom(_unescape(tok[1:-1], ln))
        if kind == "atom":
            return Atom(tok)
        if kind == "int":
            return int(tok)
        if kind == "punct" and tok in "{[":
            closing = "}" if tok == "{" else "]"
            items: list[ErlTerm] = []
            if toks[i][:2] == ("punct", closing):
                i += 1
            else:
                while True:
                    items.append(term())
                    k, t, lnn = toks[i]
                    i += 1
                    if (k, t) == ("punct", closing):
                        break
                    if (k, t) != ("punct", ","):
                        raise SyntaxError(f"line {lnn}: expected , or {closing}, got {t!r}")
            return tuple(items) if tok == "{" else items
        raise SyntaxError(f"line {ln}: expected a term, got {tok!r}")

    terms: list[ErlTerm] = []
    while toks[i][0] != "eof":
        terms.append(term())
        kind, tok, ln = toks[i]
        if kind != "end":
            raise SyntaxError(f"line {ln}: a term must end with '.', got {tok!r}")
        i += 1
    return terms
