"""ABAC conditions (``conditionVersion`` 2.0) on role assignments, as ARM evaluates them for
``Microsoft.Authorization/roleAssignments/write|delete`` (Microsoft's "Delegate Azure role assignment
management to others with conditions"; ``infra/app/rbac.bicep`` writes the same form).

The subset evaluated here (anything else is a :class:`ConditionError`, and a condition that cannot
be read is *not fulfilled*, so it refuses rather than silently allows):

- ``AND`` / ``&&``, ``OR`` / ``||``, ``NOT`` / ``!``, parentheses; ``AND`` binds tighter than ``OR``;
  evaluation short-circuits left to right, so ``(!(ActionMatches{'…/write'})) OR (@Request[…] …)``
  never reads request attributes for a delete.
- ``ActionMatches{'Microsoft.Authorization/roleAssignments/write'}`` (and ``SubOperationMatches``,
  which never matches: ARM control-plane actions have no sub-operations) with ARM's wildcards.
- ``@Request[Microsoft.Authorization/roleAssignments:<Attr>]`` (the assignment being written) and
  ``@Resource[Microsoft.Authorization/roleAssignments:<Attr>]`` (the assignment being deleted), for
  ``RoleDefinitionId``, ``PrincipalId``, ``PrincipalType``; a role definition *id* compares by its
  trailing GUID.
- Operators, optionally prefixed by a cross-product quantifier (``ForAnyOfAnyValues:``,
  ``ForAnyOfAllValues:``, ``ForAllOfAnyValues:``, ``ForAllOfAllValues:``): ``GuidEquals``,
  ``GuidNotEquals``, ``StringEquals``, ``StringNotEquals``, ``StringEqualsIgnoreCase``,
  ``StringNotEqualsIgnoreCase``, ``StringStartsWith``, ``StringNotStartsWith``, ``StringLike``,
  ``StringNotLike``; values as a set ``{a, 'b'}`` or one quoted value. ``ForAnyOfAllValues:GuidNotEquals
  {x, y}`` = some left value differs from x *and* from y; with no quantifier any-of-any is used.
- An attribute the request does not carry compares as false.

Example (Microsoft's "constrain roles" + "constrain principal types")::

    ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR
     (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]
        ForAnyOfAllValues:GuidNotEquals {8e3af657-a8ff-443c-a75c-2fe8c4bcb635}))
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any


class ConditionError(ValueError):
    """The condition is outside the evaluated subset or malformed."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<lparen>\()|(?P<rparen>\))
     |(?P<and>&&|AND\b)|(?P<or>\|\||OR\b)|(?P<not>!|NOT\b)
     |(?P<matches>(?P<mkind>ActionMatches|SubOperationMatches)\s*\{\s*'(?P<mval>[^']*)'\s*\})
     |(?P<attr>@(?P<source>Request|Resource|Principal|Environment)\[(?P<aname>[^\]]+)\])
     |(?P<set>\{(?P<setval>[^}]*)\})
     |(?P<str>'(?P<sval>[^']*)')
     |(?P<word>[A-Za-z][\w:.]*)
    )""",
    re.VERBOSE | re.IGNORECASE,
)
_QUANTIFIERS = {"foranyofanyvalues", "foranyofallvalues", "forallofanyvalues", "forallofallvalues"}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    extra: str = ""


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ConditionError(f"cannot read the condition at '{text[pos : pos + 40]}'")
        pos = m.end()
        kind = m.lastgroup or ""
        if m.group("matches"):
            out.append(_Tok("matches", m.group("mval"), m.group("mkind").lower()))
        elif m.group("attr"):
            out.append(_Tok("attr", m.group("aname").strip(), m.group("source").lower()))
        elif m.group("set") is not None:
            out.append(_Tok("set", m.group("setval")))
        elif m.group("str") is not None:
            out.append(_Tok("str", m.group("sval")))
        else:
            for name in ("lparen", "rparen", "and", "or", "not", "word"):
                if m.group(name):
                    kind = name
                    break
            out.append(_Tok(kind, m.group(kind)))
    return out


# An expression is a nested tuple: ("or", a, b) | ("and", a, b) | ("not", a) | ("matches", kind, pattern)
# | ("cmp", source, attribute, quantifier, operator, values).
Expr = tuple[Any, ...]


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None) -> _Tok:
        tok = self.peek()
        if tok is None or (kind is not None and tok.kind != kind):
            raise ConditionError(f"expected {kind or 'more'} at token {self.i}")
        self.i += 1
        return tok

    def expr(self) -> Expr:
        left = self.conjunction()
        while (tok := self.peek()) is not None and tok.kind == "or":
            self.take()
            left = ("or", left, self.conjunction())
        return left

    def conjunction(self) -> Expr:
        left = self.unary()
        while (tok := self.peek()) is not None and tok.kind == "and":
            self.take()
            left = ("and", left, self.unary())
        return left

    def unary(self) -> Expr:
        tok = self.take()
        if tok.kind == "not":
            return ("not", self.unary())
        if tok.kind == "lparen":
            inner = self.expr()
            self.take("rparen")
            return inner
        if tok.kind == "matches":
            return ("matches", tok.extra, tok.text)
        if tok.kind == "attr":
            op = self.take("word").text
            quantifier, _, operator = op.rpartition(":")
            if quantifier and quantifier.lower() not in _QUANTIFIERS:
                raise ConditionError(f"unknown quantifier '{quantifier}'")
            if operator.lower() not in _OPERATORS:
                raise ConditionError(f"unsupported operator '{operator}'")
            value = self.take()
            if value.kind == "set":
                values = [v.strip().strip("'").strip() for v in value.text.split(",") if v.strip()]
            elif value.kind in ("str", "word"):
                values = [value.text]
            else:
                raise ConditionError("expected a value or a set of values")
            return ("cmp", tok.extra, tok.text.lower(), quantifier.lower(), operator.lower(), values)
        raise ConditionError(f"unexpected '{tok.text}'")


def parse(condition: str) -> Expr:
    parser = _Parser(_tokens(condition))
    result = parser.expr()
    if parser.peek() is not None:
        raise ConditionError(f"unexpected '{parser.peek().text}' after the end of the expression")  # type: ignore[union-attr]
    return result


def _guid(value: str) -> str:
    return value.strip().rstrip("/").rsplit("/", 1)[-1].lower()


_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "guidequals": lambda a, b: _guid(a) == _guid(b),
    "guidnotequals": lambda a, b: _guid(a) != _guid(b),
    "stringequals": lambda a, b: a == b,
    "stringnotequals": lambda a, b: a != b,
    "stringequalsignorecase": lambda a, b: a.lower() == b.lower(),
    "stringnotequalsignorecase": lambda a, b: a.lower() != b.lower(),
    "stringstartswith": lambda a, b: a.startswith(b),
    "stringnotstartswith": lambda a, b: not a.startswith(b),
    "stringlike": lambda a, b: fnmatchcase(a, b),
    "stringnotlike": lambda a, b: not fnmatchcase(a, b),
}


def _compare(quantifier: str, operator: str, left: Sequence[str], right: Sequence[str]) -> bool:
    if not left or not right:
        return False
    fn = _OPERATORS[operator]
    outer = all if quantifier.startswith("forallof") else any
    inner = all if quantifier.endswith("allvalues") else any
    return outer(inner(fn(a, b) for b in right) for a in left)


def evaluate(
    condition: str,
    action: str,
    request: Mapping[str, Sequence[str]] | None = None,
    resource: Mapping[str, Sequence[str]] | None = None,
    action_matches: Callable[[str, str], bool] | None = None,
) -> bool:
    """Whether ``condition`` is fulfilled for ``action``; ``request``/``resource`` map lower-cased
    attribute names (``microsoft.authorization/roleassignments:roledefinitionid``) to their values.
    Raises :class:`ConditionError` for conditions outside the subset."""
    tree = parse(condition)
    matches = action_matches or (lambda pattern, act: pattern.lower() == act.lower())
    sources = {"request": request or {}, "resource": resource or {}}

    def run(node: Expr) -> bool:
        kind = node[0]
        if kind == "or":
            return run(node[1]) or run(node[2])
        if kind == "and":
            return run(node[1]) and run(node[2])
        if kind == "not":
            return not run(node[1])
        if kind == "matches":
            return node[1] == "actionmatches" and matches(node[2], action)
        _, source, attribute, quantifier, operator, values = node
        if source not in sources:
            raise ConditionError(f"@{source} attributes are not evaluated")
        left = list(sources[source].get(attribute, ()))
        return _compare(quantifier, operator, left, values)

    return run(tree)
