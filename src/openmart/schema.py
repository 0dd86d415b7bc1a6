"""A subscription's schema: what its records look like, validated when subscribing, not later.

Inferred from reference data (feature names; numeric vs categorical) with explicit overrides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import pandas as pd

from openmart.errors import ValidationError
from openmart.mart.identifiers import validate_column
from openmart.values import plain

#: columns every record table has; a feature may not take these names
SYSTEM_COLUMNS = frozenset(
    {
        "scoring_id",
        "scoring_timestamp",
        "asset_revision",
        "response_time",
        "record_id",
        "recorded_at",
    }
)


class ProblemType(StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"


class ColumnKind(StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind

    @property
    def sql_type(self) -> str:
        return "double precision" if self.kind is ColumnKind.NUMERIC else "text"


@dataclass(frozen=True)
class SubscriptionSchema:
    features: tuple[Column, ...]
    label: str
    problem_type: ProblemType
    prediction: str = "prediction"
    probability: str | None = "probability"
    #: classes the model predicts, in order; [negative, positive] for binary
    class_labels: tuple[Any, ...] | None = None
    #: record attributes that are not model features (e.g. a protected attribute the model never sees)
    meta: tuple[Column, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [c.name for c in self.features] + [c.name for c in self.meta]
        outputs = [self.label, self.prediction] + ([self.probability] if self.probability else [])
        for name in names + outputs:
            validate_column(name)
            if name in SYSTEM_COLUMNS:
                raise ValidationError(f"column name {name!r} is reserved by openmart", column=name)
        dupes = {n for n in names + outputs if (names + outputs).count(n) > 1}
        if dupes:
            raise ValidationError(f"column names used twice in the schema: {sorted(dupes)}", column=sorted(dupes)[0])
        if not self.features:
            raise ValidationError("a subscription needs at least one feature")
        if self.problem_type is ProblemType.REGRESSION:
            if self.class_labels:
                raise ValidationError("a regression subscription has no class labels")
        elif self.class_labels is not None:
            if len(set(self.class_labels)) != len(self.class_labels):
                raise ValidationError(f"class labels repeat: {list(self.class_labels)}")
            want = 2 if self.problem_type is ProblemType.BINARY else 3
            if (self.problem_type is ProblemType.BINARY and len(self.class_labels) != 2) or len(
                self.class_labels
            ) < min(want, 2):
                raise ValidationError(
                    f"a {self.problem_type} subscription needs {'exactly 2' if want == 2 else '2 or more'} "
                    f"class labels, got {list(self.class_labels)}"
                )

    # -- derived -------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.features]

    @property
    def numeric_features(self) -> list[str]:
        return [c.name for c in self.features if c.kind is ColumnKind.NUMERIC]

    @property
    def categorical_features(self) -> list[str]:
        return [c.name for c in self.features if c.kind is ColumnKind.CATEGORICAL]

    @property
    def input_columns(self) -> list[Column]:
        return list(self.features) + list(self.meta)

    @property
    def outputs_numeric(self) -> bool:
        """Predictions and labels are numbers (regression, or numeric class labels)."""
        if self.problem_type is ProblemType.REGRESSION:
            return True
        return self.class_labels is not None and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in self.class_labels
        )

    @property
    def output_sql_type(self) -> str:
        return "double precision" if self.outputs_numeric else "text"

    @property
    def probability_sql_type(self) -> str:
        return "double precision[]" if self.problem_type is ProblemType.MULTICLASS else "double precision"

    def column(self, name: str) -> Column:
        for c in self.input_columns:
            if c.name == name:
                return c
        raise ValidationError(f"no column {name!r} in the subscription's schema", column=name)

    # -- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["features"] = [{"name": c.name, "kind": str(c.kind)} for c in self.features]
        data["meta"] = [{"name": c.name, "kind": str(c.kind)} for c in self.meta]
        data["problem_type"] = str(self.problem_type)
        data["class_labels"] = list(self.class_labels) if self.class_labels is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubscriptionSchema:
        return cls(
            features=tuple(Column(c["name"], ColumnKind(c["kind"])) for c in data["features"]),
            meta=tuple(Column(c["name"], ColumnKind(c["kind"])) for c in data.get("meta", [])),
            label=data["label"],
            problem_type=ProblemType(data["problem_type"]),
            prediction=data.get("prediction", "prediction"),
            probability=data.get("probability"),
            class_labels=tuple(data["class_labels"]) if data.get("class_labels") is not None else None,
        )


def infer_schema(
    reference: pd.DataFrame,
    *,
    label: str,
    problem_type: ProblemType | str,
    categorical: Iterable[str] = (),
    numeric: Iterable[str] = (),
    features: Sequence[str] | None = None,
    meta: Iterable[str] = (),
    prediction: str = "prediction",
    probability: str | None = "probability",
    class_labels: Sequence[Any] | None = None,
) -> SubscriptionSchema:
    """Infer features and their kinds from reference data; explicit lists override inference.

    A column is categorical when its dtype is not numeric (text, bool, category), or when named
    in ``categorical``. Integer columns with few distinct values stay numeric unless named:
    guessing there would silently change which drift test runs.
    """
    try:
        problem = ProblemType(problem_type)
    except (ValueError, TypeError):
        raise ValidationError(f"problem_type must be one of {', '.join(ProblemType)} (got {problem_type!r})") from None
    if not isinstance(reference, pd.DataFrame):
        raise ValidationError(f"reference must be a DataFrame of records (got a {type(reference).__name__})")
    for arg, given in (("categorical", categorical), ("numeric", numeric), ("meta", meta), ("features", features)):
        if isinstance(given, str | bytes) or (given is not None and not isinstance(given, Iterable)):
            raise ValidationError(f"{arg} must be a list of column names (got {given!r})")
    if not isinstance(label, str) or not label:
        raise ValidationError(f"label must be a column name (got {label!r})")
    dup = reference.columns[reference.columns.duplicated()]
    if len(dup):
        raise ValidationError(f"reference data: column {dup[0]!r} appears twice", column=str(dup[0]))
    if label not in reference.columns:
        raise ValidationError(
            f"label column {label!r} is not in the reference data (columns: {list(reference.columns)[:20]})",
            column=label,
        )
    categorical, numeric, meta = set(categorical), set(numeric), list(meta)
    for name in categorical | numeric | set(meta):
        if name not in reference.columns:
            raise ValidationError(f"column {name!r} named in the options is not in the reference data", column=name)
    outputs = {label, prediction} | ({probability} if probability else set())
    names = (
        list(features) if features is not None else [c for c in reference.columns if c not in outputs and c not in meta]
    )

    def kind(name: str) -> ColumnKind:
        if name in categorical:
            return ColumnKind.CATEGORICAL
        if name in numeric:
            return ColumnKind.NUMERIC
        dtype = reference[name].dtype
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            return ColumnKind.CATEGORICAL
        return ColumnKind.NUMERIC

    if problem is not ProblemType.REGRESSION and class_labels is None:
        values = reference[label].dropna().unique().tolist()
        class_labels = sorted(plain(v) for v in values)
        if problem is ProblemType.BINARY and len(class_labels) != 2:
            raise ValidationError(
                f"binary problem, but label {label!r} has {len(class_labels)} distinct values in the "
                f"reference data: {class_labels[:10]}",
                column=label,
            )
    elif class_labels is not None:
        class_labels = [plain(v) for v in class_labels]
        seen = {plain(v) for v in reference[label].dropna().unique()}
        unknown = seen - set(class_labels)
        if unknown:
            raise ValidationError(
                f"label {label!r} holds values that are not declared class labels: {sorted(map(str, unknown))[:10]}"
                f" (declared: {list(class_labels)})",
                column=label,
            )
    return SubscriptionSchema(
        features=tuple(Column(str(n), kind(n)) for n in names),
        meta=tuple(Column(str(n), kind(n)) for n in meta),
        label=label,
        problem_type=problem,
        prediction=prediction,
        probability=probability if problem is not ProblemType.REGRESSION else None,
        class_labels=tuple(class_labels) if class_labels is not None else None,
    )
