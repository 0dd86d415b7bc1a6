"""User-written slice expressions: a small language parsed here, never ``eval`` and never SQL.

    age > 50 and sex == 'F'
    region in ['north', 'east'] or not (income >= 1e5)

Grammar (keywords are lower case; a feature is a name, or any text between backticks)::

    expr       := conj ('or' conj)*
    conj       := neg ('and' neg)*
    neg        := 'not' neg | '(' expr ')' | comparison
    comparison := feature ('==' | '!=' | '<' | '<=' | '>' | '>=') literal
                | feature ['not'] 'in' '[' literal (',' literal)* ']'
    literal    := number | 'text' | "text"

Features are checked against the subscription's schema, and literals against the feature's
kind: a number for a numeric feature, text for a categorical one (which allows ``==``, ``!=``
and ``in`` only). A record whose value is missing satisfies no comparison (as SQL's NULL in a
WHERE clause); ``not`` then negates that plain False. Errors name the position (0-based) in the
text.

Expressions are evaluated with numpy over columns already fetched (numbers as float64 with NaN
for missing; categories as integer codes into a vocabulary), so user text never reaches the
database at all: nothing to quote, nothing to inject.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from openmart.errors import ValidationError
from openmart.schema import ColumnKind, SubscriptionSchema

MAX_LENGTH = 2000
MAX_DEPTH = 40  # nesting of parentheses and 'not': a bound on the parser's recursion
OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
KEYWORDS = {"and", "or", "not", "in"}
_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![A-Za-z_]))
  | (?P<string>'[^']*'|"[^"]*")
  | (?P<quoted>`[^`]+`)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[()\[\],])
  )""",
    re.VERBOSE,
)


class ExpressionError(ValidationError):
    """A slice expression that cannot be parsed or does not fit the schema."""


@dataclass(frozen=True)
class Token:
    kind: str  # number, string, name, feature, op, punct, keyword, end
    text: str
    pos: int


@dataclass(frozen=True)
class Compare:
    feature: str
    op: str  # one of OPERATORS, "in", "not in"
    values: tuple[float | str, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class Both:
    op: str  # "and" / "or"
    left: Node
    right: Node


Node = Compare | Not | Both


@dataclass(frozen=True)
class Expression:
    text: str
    tree: Node

    @property
    def features(self) -> list[str]:
        found: list[str] = []

        def walk(n: Node) -> None:
            if isinstance(n, Compare):
                if n.feature not in found:
                    found.append(n.feature)
            elif isinstance(n, Not):
                walk(n.operand)
            else:
                walk(n.left)
                walk(n.right)

        walk(self.tree)
        return found


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            out.append(Token("end", "", pos))
            return out
        m = _TOKEN.match(text, pos)
        if not m or not m.lastgroup:
            raise ExpressionError(f"slice expression {text!r}: unexpected {text[pos]!r} at position {pos}")
        kind, value = m.lastgroup, m.group(m.lastgroup)
        start = m.start(kind)
        if kind == "name" and value in KEYWORDS:
            kind = "keyword"
        elif kind == "quoted":
            kind, value = "name", value[1:-1]
        out.append(Token(kind, value, start))
        pos = m.end()


class _Parser:
    def __init__(self, text: str, schema: SubscriptionSchema) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0
        self.kinds = {c.name: c.kind for c in schema.input_columns}

    def error(self, message: str, token: Token | None = None) -> ExpressionError:
        t = token or self.tokens[self.i]
        where = "at the end" if t.kind == "end" else f"at position {t.pos}"
        return ExpressionError(f"slice expression {self.text!r}: {message} {where}")

    @property
    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def expect(self, kind: str, text: str | None = None) -> Token:
        t = self.peek
        if t.kind != kind or (text is not None and t.text != text):
            raise self.error(f"expected {text or kind!r}, found {t.text or 'nothing'!r}")
        return self.take()

    def parse(self) -> Node:
        node = self.disjunction(0)
        if self.peek.kind != "end":
            raise self.error(f"unexpected {self.peek.text!r}")
        return node

    def disjunction(self, depth: int) -> Node:
        node = self.conjunction(depth)
        while self.peek.kind == "keyword" and self.peek.text == "or":
            self.take()
            node = Both("or", node, self.conjunction(depth))
        return node

    def conjunction(self, depth: int) -> Node:
        node = self.negation(depth)
        while self.peek.kind == "keyword" and self.peek.text == "and":
            self.take()
            node = Both("and", node, self.negation(depth))
        return node

    def negation(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise self.error(f"nested deeper than {MAX_DEPTH}")
        t = self.peek
        if t.kind == "keyword" and t.text == "not":
            self.take()
            return Not(self.negation(depth + 1))
        if t.kind == "punct" and t.text == "(":
            self.take()
            node = self.disjunction(depth + 1)
            self.expect("punct", ")")
            return node
        return self.comparison()

    def literal(self, kind: ColumnKind, feature: str) -> float | str:
        t = self.take()
        if t.kind == "number":
            if kind is not ColumnKind.NUMERIC:
                raise self.error(f"{feature!r} is categorical: compare it with text in quotes, not {t.text}", t)
            return float(t.text)
        if t.kind == "string":
            if kind is ColumnKind.NUMERIC:
                raise self.error(f"{feature!r} is numeric: compare it with a number, not {t.text}", t)
            return t.text[1:-1]
        raise self.error(f"expected a number or a quoted text, found {t.text or 'nothing'!r}", t)

    def comparison(self) -> Node:
        t = self.take()
        if t.kind != "name":
            raise self.error(f"expected a feature name, found {t.text or 'nothing'!r}", t)
        if t.text not in self.kinds:
            known = ", ".join(sorted(self.kinds))
            raise self.error(f"unknown feature {t.text!r} (the schema has: {known})", t)
        kind = self.kinds[t.text]
        op_token = self.peek
        if op_token.kind == "op":
            self.take()
            if kind is ColumnKind.CATEGORICAL and op_token.text not in ("==", "!="):
                raise self.error(f"{t.text!r} is categorical: {op_token.text!r} does not apply to it", op_token)
            return Compare(t.text, op_token.text, (self.literal(kind, t.text),))
        negated = op_token.kind == "keyword" and op_token.text == "not"
        if negated:
            self.take()
        if self.peek.kind == "keyword" and self.peek.text == "in":
            self.take()
            self.expect("punct", "[")
            values = [self.literal(kind, t.text)]
            while self.peek.kind == "punct" and self.peek.text == ",":
                self.take()
                values.append(self.literal(kind, t.text))
            self.expect("punct", "]")
            return Compare(t.text, "not in" if negated else "in", tuple(values))
        raise self.error(f"expected a comparison ({', '.join(OPERATORS)}, in) after {t.text!r}")


def parse(text: str, schema: SubscriptionSchema) -> Expression:
    """Parse and check ``text`` against ``schema``; :class:`ExpressionError` says what and where."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("a slice expression must be a non-empty text")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"a slice expression is at most {MAX_LENGTH} characters (got {len(text)})")
    return Expression(text, _Parser(text, schema).parse())


# -- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Categories:
    """A categorical column as integer codes into ``vocabulary`` (-1: missing)."""

    codes: np.ndarray
    vocabulary: tuple[str, ...]


def evaluate(expression: Expression, columns: Mapping[str, np.ndarray | Categories]) -> np.ndarray:
    """The boolean mask of the rows the expression selects: numeric columns as float arrays (NaN:
    missing), categorical ones as :class:`Categories`."""

    def run(n: Node) -> np.ndarray:
        if isinstance(n, Not):
            return ~run(n.operand)
        if isinstance(n, Both):
            return run(n.left) & run(n.right) if n.op == "and" else run(n.left) | run(n.right)
        col = columns[n.feature]
        if isinstance(col, Categories):
            index = {v: i for i, v in enumerate(col.vocabulary)}
            wanted = np.array([index.get(str(v), -2) for v in n.values])  # -2: a value never seen
            hit = np.isin(col.codes, wanted)
            present = col.codes >= 0
            return present & (~hit if n.op in ("!=", "not in") else hit)
        x = np.asarray(col, dtype=float)
        present = ~np.isnan(x)
        if n.op in ("in", "not in"):
            hit = np.isin(x, np.array(n.values, dtype=float))
            return present & (~hit if n.op == "not in" else hit)
        with np.errstate(invalid="ignore"):
            result = _COMPARE[n.op](x, float(n.values[0]))
        return present & result

    return run(expression.tree)
