"""The subset of Kusto Query Language that Azure Resource Graph callers here use.

Supported (DESIGN.md "Discovery query"): a table (``Resources``, ``ResourceContainers``; a query that
starts with an operator runs against ``Resources``, as Resource Graph does) piped into
``where`` (``and``/``or``/``not()``; ``==``, ``!=``, ``=~``, ``!~``, ``contains``, ``!contains``,
``contains_cs``, ``has``, ``!has``, ``startswith``, ``endswith``, ``in``, ``in~``, ``!in``, ``!in~``,
``<``, ``>``, ``<=``, ``>=``), ``project`` (``col``, ``name = expr``, dotted paths), ``project-away``,
``extend``, ``order by``/``sort by`` (default ``desc`` as in KQL), ``limit``/``take``, ``count``.
Scalars: ``tostring()`` (dynamic values as compact JSON, like Kusto), ``tolower()``, ``toupper()``,
``isnotnull()``, ``isnull()``, ``isnotempty()``, ``isempty()``, ``strlen()``, ``array_length()``,
``strcat()``; paths ``a.b.c``, ``a['b']``, ``a[0]``. String comparisons follow Kusto: ``=~``,
``contains``, ``has``, ``in~`` are case-insensitive, ``==`` and ``in`` are not; column names are
case-sensitive and an unknown one is an error, as in Resource Graph.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Row = dict[str, Any]
Expr = Callable[[Row], Any]

_TOKEN = re.compile(
    r"""\s+|(?P<str>@?'(?:[^'\\]|\\.)*'|@?"(?:[^"\\]|\\.)*")|(?P<num>\d+(?:\.\d+)?)"""
    r"""|(?P<op>==|!=|=~|!~|>=|<=|[|(),.\[\]=<>])|(?P<word>!?[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z]+)?~?)"""
)


class KqlError(Exception):
    def __init__(self, code: str, message: str, position: int = 0, token: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.position = position
        self.token = token


@dataclass
class Token:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise KqlError("ParserFailure", f"Unexpected character '{text[pos]}'", pos, text[pos])
        if m.lastgroup:
            tokens.append(Token(m.lastgroup, m.group(m.lastgroup), pos))
        pos = m.end()
    tokens.append(Token("eof", "", len(text)))
    return tokens


def _unquote(text: str) -> str:
    verbatim = text.startswith("@")
    body = text[2:-1] if verbatim else text[1:-1]
    return (
        body
        if verbatim
        else re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)
    )


# While a query runs (``Parser.parse``'s ``run``), the JSON text of each object and the lower case of
# each text are made once, not once per predicate: a fleet's query ORs ~100 ``contains`` tests on
# ``tostring(properties)``, and remaking them per test cost the emulator 2-4 s per query. Keyed by
# ``id`` with the object kept alive, so an id is never reused while the run lasts.
_memo = threading.local()


def _remembered(value: Any, make: Callable[[Any], str]) -> str:
    cache: dict[int, tuple[Any, str]] | None = getattr(_memo, "texts", None)
    if cache is None:
        return make(value)
    hit = cache.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    text = make(value)
    cache[id(value)] = (value, text)
    return text


def to_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return _remembered(value, lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False))
    return str(value)


def _lower(text: str) -> str:
    return _remembered(text, str.lower) if len(text) > 64 else text.lower()


def _has(haystack: str, needle: str) -> bool:
    h, n = haystack.lower(), needle.lower()
    if not n:
        return True
    start = 0
    while (i := h.find(n, start)) >= 0:
        before = h[i - 1] if i > 0 else " "
        after = h[i + len(n)] if i + len(n) < len(h) else " "
        if not (before.isalnum() and n[0].isalnum()) and not (after.isalnum() and n[-1].isalnum()):
            return True
        start = i + 1
    return False


# the string tests (text, what it is tested for); both already ``to_string``-ed
_TEXT_TESTS: dict[str, Callable[[str, str], bool]] = {
    "contains": lambda ls, rs: rs.lower() in _lower(ls),
    "!contains": lambda ls, rs: rs.lower() not in _lower(ls),
    "contains_cs": lambda ls, rs: rs in ls,
    "!contains_cs": lambda ls, rs: rs not in ls,
    "has": lambda ls, rs: _has(ls, rs),
    "!has": lambda ls, rs: not _has(ls, rs),
    "startswith": lambda ls, rs: ls.lower().startswith(rs.lower()),
    "!startswith": lambda ls, rs: not ls.lower().startswith(rs.lower()),
    "endswith": lambda ls, rs: ls.lower().endswith(rs.lower()),
    "!endswith": lambda ls, rs: not ls.lower().endswith(rs.lower()),
}


def _against_literal(op: str, left: Expr, literal: str) -> Expr | None:
    """``left <op> 'literal'`` with the literal's lower case made once, not per row (``_compare``'s
    answers exactly): a fleet's query tests ~600 rows against ~120 such comparisons, and the
    general path made each one cost ~4 us of the emulator's one core. None: no shortcut for ``op``."""
    low = literal.lower()
    if op == "contains":
        return lambda r: low in _lower(to_string(left(r)))
    if op == "!contains":
        return lambda r: low not in _lower(to_string(left(r)))
    if op == "=~":
        return lambda r: (v := left(r)) is not None and to_string(v).lower() == low
    if op == "!~":
        return lambda r: (v := left(r)) is None or to_string(v).lower() != low
    if op == "==":
        return lambda r: (v := left(r)) is not None and to_string(v) == literal
    if op == "!=":
        return lambda r: (v := left(r)) is not None and to_string(v) != literal
    return None


class _Constant:
    """A literal as an expression (``primary``), so that a comparison can see its value."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self, r: Row) -> Any:
        return self.value


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("==", "!="):
        if left is None or right is None:
            return False
        equal = (
            to_string(left) == to_string(right)
            if isinstance(right, str) or isinstance(left, str)
            else left == right
        )
        return equal if op == "==" else not equal
    ls, rs = to_string(left), to_string(right)
    if op == "=~":
        return left is not None and ls.lower() == rs.lower()
    if op == "!~":
        return left is None or ls.lower() != rs.lower()
    if op in _TEXT_TESTS:
        return _TEXT_TESTS[op](ls, rs)
    if left is None or right is None:
        return False
    try:
        return bool({"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op])
    except TypeError:
        return False


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "tostring": lambda v: to_string(v),
    "tolower": lambda v: to_string(v).lower(),
    "toupper": lambda v: to_string(v).upper(),
    "isnotnull": lambda v: v is not None,
    "isnull": lambda v: v is None,
    "isnotempty": lambda v: v is not None and v != "" and v != [] and v != {},
    "isempty": lambda v: v is None or v == "" or v == [] or v == {},
    "strlen": lambda v: len(to_string(v)),
    "array_length": lambda v: len(v) if isinstance(v, list) else None,
    "not": lambda v: not v,
    "strcat": lambda *vs: "".join(to_string(v) for v in vs),
}
_COMPARISONS = {"==", "!=", "=~", "!~", "<", ">", "<=", ">=", "contains", "!contains", "contains_cs", "!contains_cs",
                "has", "!has", "startswith", "!startswith", "endswith", "!endswith"}  # fmt: skip
_IN = {"in", "in~", "!in", "!in~"}


_OPERATORS = ("where", "project", "project-away", "extend", "order", "sort", "limit", "take", "count")


class Parser:
    def __init__(self, text: str, tables: dict[str, list[str]]) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.tables = {k.lower(): (k, v) for k, v in tables.items()}
        self.columns: list[str] = []

    # token helpers
    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, message: str, tok: Token | None = None) -> KqlError:
        tok = tok or self.peek()
        return KqlError("ParserFailure", message, tok.pos, tok.text)

    def expect(self, text: str) -> Token:
        tok = self.take()
        if tok.text.lower() != text:
            raise self.fail(f"Expected '{text}'", tok)
        return tok

    def at_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "word" and tok.text.lower() in words

    # query
    def parse(self) -> Callable[[dict[str, list[Row]]], tuple[list[str], list[Row]]]:
        stages: list[Callable[[list[Row]], list[Row]]] = []
        if (
            self.at_word(*_OPERATORS)
            and self.peek().text.lower() not in self.tables
            and "resources" in self.tables
        ):
            # Resource Graph runs a query that starts with an operator against Resources (recorded Azure
            # traffic: "project id", "project id, tags, properties | limit 2"; tests/conformance/recordings)
            table, self.columns = self.tables["resources"]
            stages.append(self.operator())
        else:
            tok = self.take()
            if tok.kind != "word" or tok.text.lower() not in self.tables:
                raise KqlError("UnknownTable", f"Unknown table '{tok.text}'", tok.pos, tok.text)
            table, self.columns = self.tables[tok.text.lower()]
        while self.peek().text == "|":
            self.take()
            stages.append(self.operator())
        if self.peek().kind != "eof":
            raise self.fail("Expected '|' or end of query")
        columns = list(self.columns)

        def run(data: dict[str, list[Row]]) -> tuple[list[str], list[Row]]:
            _memo.texts = {}
            try:
                rows = [dict(r) for r in data[table]]
                for stage in stages:
                    rows = stage(rows)
                return columns, rows
            finally:
                _memo.texts = None

        return run

    def operator(self) -> Callable[[list[Row]], list[Row]]:
        tok = self.take()
        word = tok.text.lower()
        if word == "where":
            predicate = self.expr()
            return lambda rows: [r for r in rows if predicate(r) is True]
        if word in ("project", "extend"):
            items = self.assignments(allow_plain=True)
            if word == "project":
                self.columns = [name for name, _ in items]
                return lambda rows: [{name: fn(r) for name, fn in items} for r in rows]
            self.columns = self.columns + [n for n, _ in items if n not in self.columns]
            return lambda rows: [{**r, **{name: fn(r) for name, fn in items}} for r in rows]
        if word == "project-away":
            names = [self.take().text]
            while self.peek().text == ",":
                self.take()
                names.append(self.take().text)
            for name in names:
                if name not in self.columns:
                    raise KqlError("UnknownColumn", f"Failed to resolve column '{name}'", tok.pos, name)
            self.columns = [c for c in self.columns if c not in names]
            return lambda rows: [{k: v for k, v in r.items() if k not in names} for r in rows]
        if word in ("order", "sort"):
            self.expect("by")
            keys: list[tuple[Expr, bool]] = []
            while True:
                fn = self.expr()
                descending = True
                if self.at_word("asc", "desc"):
                    descending = self.take().text.lower() == "desc"
                keys.append((fn, descending))
                if self.peek().text != ",":
                    break
                self.take()

            def order(rows: list[Row]) -> list[Row]:
                for fn, descending in reversed(keys):
                    rows = sorted(rows, key=lambda r, fn=fn: _sort_key(fn(r)), reverse=descending)  # type: ignore[misc]
                return rows

            return order
        if word in ("limit", "take"):
            n = self.take()
            if n.kind != "num":
                raise self.fail("Expected a number", n)
            count = int(float(n.text))
            return lambda rows: rows[:count]
        if word == "count":
            self.columns = ["Count"]
            return lambda rows: [{"Count": len(rows)}]
        raise KqlError("UnknownOperator", f"Unsupported query operator '{tok.text}'", tok.pos, tok.text)

    def assignments(self, allow_plain: bool) -> list[tuple[str, Expr]]:
        items: list[tuple[str, Expr]] = []
        while True:
            start = self.i
            tok = self.peek()
            if tok.kind == "word" and self.tokens[self.i + 1].text == "=":
                self.take()
                self.take()
                items.append((tok.text, self.expr()))
            else:
                self.i = start
                fn = self.expr()
                name = "_".join(t.text for t in self.tokens[start : self.i] if t.kind in ("word", "str"))
                name = name.replace("'", "").replace('"', "")
                items.append((name, fn))
            if self.peek().text != ",":
                return items
            self.take()

    # expressions
    # a chain of ``or`` (``and``) is one flat test, not a lambda nested per operand: a fleet's query
    # ORs ~120 comparisons, and each row that meets none walked 120 nested calls
    def expr(self) -> Expr:
        terms = [self.conjunction()]
        while self.at_word("or"):
            self.take()
            terms.append(self.conjunction())
        if len(terms) == 1:
            return terms[0]
        return lambda r: any(t(r) is True for t in terms)

    def conjunction(self) -> Expr:
        terms = [self.comparison()]
        while self.at_word("and"):
            self.take()
            terms.append(self.comparison())
        if len(terms) == 1:
            return terms[0]
        return lambda r: all(t(r) is True for t in terms)

    def comparison(self) -> Expr:
        left = self.primary()
        tok = self.peek()
        op = tok.text.lower()
        if op in _COMPARISONS and (tok.kind == "op" or tok.kind == "word"):
            self.take()
            right = self.primary()
            if isinstance(right, _Constant) and isinstance(right.value, str):
                fast = _against_literal(op, left, right.value)
                if fast is not None:
                    return fast
            return lambda r: _compare(op, left(r), right(r))
        if tok.kind == "word" and op in _IN:
            self.take()
            self.expect("(")
            values = [self.primary()]
            while self.peek().text == ",":
                self.take()
                values.append(self.primary())
            self.expect(")")
            insensitive, negate = op.endswith("~"), op.startswith("!")

            def member(r: Row) -> bool:
                v = to_string(left(r))
                options = [to_string(fn(r)) for fn in values]
                found = v.lower() in [o.lower() for o in options] if insensitive else v in options
                return found != negate

            return member
        return left

    def primary(self) -> Expr:
        tok = self.take()
        if tok.kind == "str":
            return _Constant(_unquote(tok.text))
        if tok.kind == "num":
            return _Constant(float(tok.text) if "." in tok.text else int(tok.text))
        if tok.text == "(":
            inner = self.expr()
            self.expect(")")
            return inner
        if tok.kind != "word":
            raise self.fail(f"Unexpected '{tok.text}'", tok)
        lowered = tok.text.lower()
        if lowered in ("true", "false"):
            return lambda r: lowered == "true"
        if self.peek().text == "(":
            if lowered not in _FUNCTIONS:
                raise KqlError("UnknownFunction", f"Unknown function: '{tok.text}'", tok.pos, tok.text)
            self.take()
            args: list[Expr] = []
            if self.peek().text != ")":
                args.append(self.expr())
                while self.peek().text == ",":
                    self.take()
                    args.append(self.expr())
            self.expect(")")
            fn = _FUNCTIONS[lowered]
            if len(args) == 1:
                (only,) = args
                return lambda r: fn(only(r))
            return lambda r: fn(*(a(r) for a in args))
        if tok.text.lower() in _OPERATORS and tok.text not in self.columns:
            # a query operator where a value is expected: Kusto's parser fails (recorded: "where where")
            raise KqlError("ParserFailure", "ParserFailure", tok.pos, tok.text)
        if tok.text not in self.columns:
            raise KqlError(
                "UnknownColumn", f"Failed to resolve scalar expression named '{tok.text}'", tok.pos, tok.text
            )
        steps: list[Any] = []
        while self.peek().text in (".", "["):
            if self.take().text == ".":
                steps.append(self.take().text)
            else:
                index_tok = self.take()
                steps.append(_unquote(index_tok.text) if index_tok.kind == "str" else int(index_tok.text))
                self.expect("]")
        column = tok.text

        def path(r: Row) -> Any:
            value = r.get(column)
            for step in steps:
                if isinstance(step, int):
                    value = (
                        value[step] if isinstance(value, list) and -len(value) <= step < len(value) else None
                    )
                else:
                    value = value.get(step) if isinstance(value, dict) else None
            return value

        return path


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, value)
    return (2, to_string(value))


def compile_query(
    text: str, tables: dict[str, list[str]]
) -> Callable[[dict[str, list[Row]]], tuple[list[str], list[Row]]]:
    return Parser(text, tables).parse()
