"""Will ARM let the mover write (or delete) this role assignment? ABAC conditions (version 2.0) on the
mover's own RBAC Administrator assignment, evaluated before anything is written (the plan's preflight).

ARM's permissions API answers ``actions``/``notActions`` only; a condition lives on the role assignment
that grants ``Microsoft.Authorization/roleAssignments/write|delete``, so the preflight reads those
assignments and asks :func:`allows` for each copy (``@Request``: the new assignment) and each cleanup
delete (``@Resource``: the old one). The forms our infra and Microsoft's "Delegate Azure role assignment
management using conditions" use are understood: ``AND``/``&&``, ``OR``/``||``, ``NOT``/``!``,
parentheses (AND binds tighter), ``ActionMatches{'…'}``, ``@Request[…]`` / ``@Resource[…]`` of
``Microsoft.Authorization/roleAssignments:RoleDefinitionId|PrincipalId|PrincipalType``, the operators
``GuidEquals``, ``GuidNotEquals``, ``StringEquals``, ``StringNotEquals``, ``StringEqualsIgnoreCase``,
``StringNotEqualsIgnoreCase`` with an optional ``ForAnyOfAnyValues:`` / ``ForAnyOfAllValues:`` /
``ForAllOfAnyValues:`` / ``ForAllOfAllValues:`` quantifier, values as ``{a, b}`` or ``'a'``. Anything
else raises :class:`Unreadable` (the preflight then warns instead of guessing).

Example::

    allows(condition, "Microsoft.Authorization/roleAssignments/write",
           {"RoleDefinitionId": ["8e3af657-…"], "PrincipalType": ["ServicePrincipal"]})   # False for Owner
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence

_TOKEN = re.compile(
    r"\s*(?:(?P<l>\()|(?P<r>\))|(?P<and>&&|AND\b)|(?P<or>\|\||OR\b)|(?P<not>!|NOT\b)"
    r"|ActionMatches\s*\{\s*'(?P<action>[^']*)'\s*\}"
    r"|@(?P<source>Request|Resource)\[Microsoft\.Authorization/roleAssignments:(?P<attr>\w+)\]"
    r"|\{(?P<set>[^}]*)\}|'(?P<one>[^']*)'|(?P<op>[A-Za-z:]+))",
    re.IGNORECASE,
)
_OPS = {"guidequals", "guidnotequals", "stringequals", "stringnotequals", "stringequalsignorecase",
        "stringnotequalsignorecase"}  # fmt: skip


class Unreadable(ValueError):
    """The condition uses a form this evaluator does not know."""


def _tokens(text: str) -> list[tuple[str, str]]:
    found, at = [], 0
    text = text.strip()
    while at < len(text):
        match = _TOKEN.match(text, at)
        if not match or match.end() == at:
            raise Unreadable(f"cannot read the condition at: {text[at : at + 40]!r}")
        at = match.end()
        kind = next(k for k, v in match.groupdict().items() if v is not None and k != "source")
        value = match.group(kind)
        if kind == "attr":
            value = f"{match.group('source').lower()}:{value.lower()}"
        found.append((kind, value))
    return found


def _compare(op: str, left: str, right: str, attr: str) -> bool:
    base = op.lower().replace("not", "")
    if base.startswith("guid") or attr.endswith("roledefinitionid"):
        left, right = left.rsplit("/", 1)[-1].lower(), right.rsplit("/", 1)[-1].lower()
    elif base.endswith("ignorecase"):
        left, right = left.lower(), right.lower()
    equal = left == right
    return not equal if "not" in op.lower() else equal


class _Parser:
    def __init__(
        self, tokens: list[tuple[str, str]], action: str, attrs: Mapping[str, Sequence[str]]
    ) -> None:
        self.tokens, self.at, self.action = tokens, 0, action.lower()
        self.attrs = {k.lower(): [str(v) for v in vs] for k, vs in attrs.items()}

    def peek(self) -> str:
        return self.tokens[self.at][0] if self.at < len(self.tokens) else ""

    def take(self) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise Unreadable("the condition ends too early")
        self.at += 1
        return self.tokens[self.at - 1]

    def either(self) -> bool:
        value = self.both()
        while self.peek() == "or":
            self.take()
            value = self.both() or value
        return value

    def both(self) -> bool:
        value = self.unary()
        while self.peek() == "and":
            self.take()
            value = self.unary() and value
        return value

    def unary(self) -> bool:
        kind, value = self.take()
        if kind == "not":
            return not self.unary()
        if kind == "l":
            inner = self.either()
            if self.take()[0] != "r":
                raise Unreadable("unbalanced parentheses")
            return inner
        if kind == "action":
            return fnmatch.fnmatchcase(self.action, value.lower())
        if kind == "attr":
            return self.comparison(value)
        raise Unreadable(f"unexpected {value!r}")

    def comparison(self, attr: str) -> bool:
        kind, op = self.take()
        if kind != "op":
            raise Unreadable(f"expected an operator after {attr}")
        quantifier, _, name = op.rpartition(":")
        if name.lower() not in _OPS:
            raise Unreadable(f"operator {op} is not evaluated")
        kind, raw = self.take()
        if kind not in ("set", "one"):
            raise Unreadable(f"expected a value after {op}")
        rights = [v.strip().strip("'") for v in raw.split(",")] if kind == "set" else [raw]
        source, _, short = attr.partition(":")
        lefts = self.attrs.get(f"{source}:{short}", self.attrs.get(short, []))
        if not lefts:
            return False
        q = quantifier.lower() or "foranyofanyvalues"
        outer = all if q.startswith("forall") else any
        inner = all if q.endswith("allvalues") else any
        return outer(inner(_compare(name, left, right, short) for right in rights) for left in lefts)


def allows(condition: str, action: str, attributes: Mapping[str, Sequence[str]]) -> bool:
    """Whether ``condition`` lets ``action`` happen for an assignment with ``attributes``
    (``RoleDefinitionId``, ``PrincipalType``, ``PrincipalId``; read for both ``@Request`` and ``@Resource``)."""
    parser = _Parser(_tokens(condition), action, attributes)
    value = parser.either()
    if parser.at != len(parser.tokens):
        raise Unreadable("trailing text after the condition")
    return value
