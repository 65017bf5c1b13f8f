"""Fault rules as data: the schema of faults.yaml and its compilation per device kind.

A compiled rule is a tuple of plain conditions with thresholds already resolved for one
device kind, so judging a reading is a few comparisons and no lookups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alarmgw.model import FIELDS, DeviceKind
from alarmgw.yamlfile import load_yaml_model

DEFAULT_FAULTS_FILE = Path(__file__).with_name("faults.yaml")

Threshold = float | str | dict[str, float | str | None] | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Codes(_Strict):
    contact_id: int | None = None
    sia: tuple[str, str] | None = None


class Condition(_Strict):
    field: str
    is_: bool | None = Field(default=None, alias="is")
    above: Threshold = None
    below: Threshold = None
    clear_above: Threshold = None
    clear_below: Threshold = None

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        if self.field not in FIELDS:
            raise ValueError(f"field {self.field!r} is not a reading field ({', '.join(FIELDS)})")
        tests = [t for t in (self.is_, self.above, self.below) if t is not None]
        if len(tests) != 1:
            raise ValueError("give exactly one of is, above, below")
        return self


class FaultRule(_Strict):
    title: str
    repair: Literal["equipment", "accessory"]
    codes: dict[str, Codes]
    when: tuple[Condition, ...] = Field(min_length=1)
    raise_after: int = Field(default=1, ge=1)
    raise_after_s: float = Field(default=0.0, ge=0)
    clear_after: int = Field(default=1, ge=1)
    clear_after_s: float = Field(default=0.0, ge=0)

    def codes_for(self, kind: DeviceKind) -> Codes:
        return self.codes.get(kind.value) or self.codes.get("default") or Codes()


class FaultTable(_Strict):
    faults: dict[str, FaultRule]


def load_fault_table(path: Path | str = DEFAULT_FAULTS_FILE) -> FaultTable:
    return load_yaml_model(path, FaultTable)


# --- compiled form -------------------------------------------------------------------

_IS, _ABOVE, _BELOW = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Test:
    """One condition for one kind. `clear` is the hysteresis bound (None: same as `limit`)."""

    field: str
    op: int
    limit: float
    clear: float


@dataclass(frozen=True, slots=True)
class CompiledRule:
    fault: str
    tests: tuple[Test, ...]
    raise_after: int
    raise_after_s: float
    clear_after: int
    clear_after_s: float


def _resolve(value: Threshold, kind: DeviceKind, supervision: Mapping[str, float | None]) -> float | None:
    if isinstance(value, dict):
        value = value.get(kind.value, value.get("default"))
    if value == "supervision":
        return supervision.get(kind.value)
    if isinstance(value, str):
        raise ValueError(f"threshold {value!r} is neither a number nor 'supervision'")
    return value


def compile_rules(
    table: FaultTable, kind: DeviceKind, supervision: Mapping[str, float | None]
) -> tuple[CompiledRule, ...]:
    """The rules that apply to `kind`, with every threshold resolved."""
    out = []
    for name, rule in table.faults.items():
        tests = []
        for c in rule.when:
            if c.is_ is not None:
                tests.append(Test(c.field, _IS, 1.0 if c.is_ else 0.0, 0.0))
                continue
            op = _ABOVE if c.above is not None else _BELOW
            limit = _resolve(c.above if op == _ABOVE else c.below, kind, supervision)
            if limit is None:
                continue
            clear = _resolve(c.clear_below if op == _ABOVE else c.clear_above, kind, supervision)
            tests.append(Test(c.field, op, limit, limit if clear is None else clear))
        if tests:
            out.append(
                CompiledRule(
                    name,
                    tuple(tests),
                    rule.raise_after,
                    rule.raise_after_s,
                    rule.clear_after,
                    rule.clear_after_s,
                )
            )
    return tuple(out)


# Verdicts of `judge`, strongest first: a fault that holds on any condition holds; one in
# a hysteresis band on any condition is not yet gone.
HOLDS, BAND, GONE, ABSENT = 3, 2, 1, 0


def judge(rule: CompiledRule, values: Mapping[str, float | int | bool]) -> int:
    """HOLDS: the fault condition holds. GONE: clearly gone (past the hysteresis).
    BAND: inside a hysteresis band. ABSENT: the reading carries none of the rule's fields."""
    verdict = ABSENT
    for t in rule.tests:
        v = values.get(t.field)
        if v is None:
            continue
        if t.op == _IS:
            if bool(v) == bool(t.limit):
                return HOLDS
            verdict = max(verdict, GONE)
        elif t.op == _ABOVE:
            if v > t.limit:
                return HOLDS
            verdict = max(verdict, GONE if v <= t.clear else BAND)
        else:
            if v < t.limit:
                return HOLDS
            verdict = max(verdict, GONE if v >= t.clear else BAND)
    return verdict
