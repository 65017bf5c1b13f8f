"""Register maps as data: a profile says which registers of a panel hold which field.

Pure functions only: validate a profile, plan merged block reads over device slots, decode
register words into `Reading` values, and encode values into words (the simulator's side).
Modbus Application Protocol v1.1b3 §6.3: one Read Holding/Input Registers request carries
at most 125 registers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alarmgw.model import FIELDS, DeviceKind
from alarmgw.yamlfile import load_yaml_model

# Modbus spec limit for function codes 3 and 4 (quantity 1..125, §6.3 / §6.4).
MODBUS_MAX_READ_REGISTERS = 125
# Reading a few unused registers costs less than one more request/response round trip.
DEFAULT_MAX_GAP_REGISTERS = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NumberField(_Strict):
    """A numeric value in one (u16/s16) or two (u32, high word first) registers."""

    offset: int = Field(ge=0)
    type: Literal["u16", "s16", "u32"] = "u16"
    scale: float = 1.0


class FlagWord(_Strict):
    """A register whose bits are boolean fields: field name -> bit number (0 = LSB)."""

    offset: int = Field(ge=0)
    type: Literal["bits"]
    flags: dict[str, Annotated[int, Field(ge=0, le=15)]]


FieldSpec = Annotated[NumberField | FlagWord, Field(union_mode="left_to_right")]


class CommandSpec(_Strict):
    """A command the panel takes as a register write (function 6) into the device's slot."""

    offset: int = Field(ge=0)
    value: int = Field(ge=0, le=0xFFFF)


class Layout(_Strict):
    fields: dict[str, FieldSpec]
    commands: dict[str, CommandSpec] = {}


class Profile(_Strict):
    """One panel model's register map; see config/profiles/*.yaml."""

    name: str
    description: str = ""
    function: Literal["holding", "input"] = "holding"
    slot_base: int = Field(default=0, ge=0)
    slot_registers: int = Field(ge=1, le=MODBUS_MAX_READ_REGISTERS)
    max_read_registers: int = Field(default=MODBUS_MAX_READ_REGISTERS, ge=1, le=MODBUS_MAX_READ_REGISTERS)
    max_gap_registers: int = Field(default=DEFAULT_MAX_GAP_REGISTERS, ge=0)
    # Layout per device kind; `default` serves every kind without its own.
    layouts: dict[str, Layout]

    @model_validator(mode="after")
    def _check(self) -> Profile:
        if "default" not in self.layouts:
            raise ValueError("layouts: a 'default' layout is required")
        kinds = {k.value for k in DeviceKind} | {"default"}
        for lname, layout in self.layouts.items():
            if lname not in kinds:
                raise ValueError(f"layouts.{lname}: not a device kind ({', '.join(sorted(kinds))})")
            for fname, spec in layout.fields.items():
                width = 2 if isinstance(spec, NumberField) and spec.type == "u32" else 1
                if spec.offset + width > self.slot_registers:
                    raise ValueError(
                        f"layouts.{lname}.fields.{fname}: offset {spec.offset} lies outside "
                        f"the {self.slot_registers}-register slot"
                    )
                names = spec.flags if isinstance(spec, FlagWord) else {fname: 0}
                for n in names:
                    if n not in FIELDS:
                        raise ValueError(f"layouts.{lname}.fields.{fname}: unknown field {n!r}")
        if self.max_read_registers < self.slot_registers:
            raise ValueError("max_read_registers must hold at least one slot")
        return self

    def layout_for(self, kind: DeviceKind) -> Layout:
        return self.layouts.get(kind.value) or self.layouts["default"]

    def slot_address(self, slot: int) -> int:
        return self.slot_base + slot * self.slot_registers


def load_profile(path: Path | str) -> Profile:
    """Read and validate a profile file (raises `ConfigError`)."""
    return load_yaml_model(path, Profile)


# A compiled layout: (name, offset, kind, scale or bit mask). Compiled once so decoding a
# slot is a flat loop with no attribute lookups into pydantic models.
_Op = tuple[str, int, int, float]
_U16, _S16, _U32, _BIT = 0, 1, 2, 3
_KIND = {"u16": _U16, "s16": _S16, "u32": _U32}


@dataclass(frozen=True, slots=True)
class CompiledLayout:
    ops: tuple[_Op, ...]
    size: int


def compile_layout(layout: Layout, size: int) -> CompiledLayout:
    ops: list[_Op] = []
    for name, spec in layout.fields.items():
        if isinstance(spec, FlagWord):
            ops.extend((flag, spec.offset, _BIT, float(1 << bit)) for flag, bit in spec.flags.items())
        else:
            ops.append((name, spec.offset, _KIND[spec.type], spec.scale))
    return CompiledLayout(tuple(ops), size)


def decode_slot(layout: CompiledLayout, words: Sequence[int], start: int = 0) -> dict[str, float | int | bool]:
    """Decode one device's slot from `words[start:start+size]` into field values."""
    if start < 0 or start + layout.size > len(words):
        raise ValueError(f"slot at {start} needs {layout.size} registers, {len(words)} given")
    out: dict[str, float | int | bool] = {}
    for name, offset, kind, arg in layout.ops:
        w = words[start + offset]
        if kind == _BIT:
            out[name] = bool(w & int(arg))
        elif kind == _U16:
            out[name] = w * arg if arg != 1.0 else w
        elif kind == _S16:
            v = w - 0x10000 if w & 0x8000 else w
            out[name] = v * arg if arg != 1.0 else v
        else:
            v = (w << 16) | words[start + offset + 1]
            out[name] = v * arg if arg != 1.0 else v
    return out


def encode_slot(layout: CompiledLayout, values: Mapping[str, float | int | bool]) -> list[int]:
    """Encode field values into a slot's words; fields not given are zero. Values saturate."""
    words = [0] * layout.size
    for name, offset, kind, arg in layout.ops:
        if name not in values:
            continue
        v = values[name]
        if kind == _BIT:
            if v:
                words[offset] |= int(arg)
            continue
        raw = round(float(v) / arg)
        if kind == _U16:
            words[offset] = min(max(raw, 0), 0xFFFF)
        elif kind == _S16:
            words[offset] = min(max(raw, -0x8000), 0x7FFF) & 0xFFFF
        else:
            raw = min(max(raw, 0), 0xFFFFFFFF)
            words[offset], words[offset + 1] = raw >> 16, raw & 0xFFFF
    return words


@dataclass(frozen=True, slots=True)
class BlockRead:
    """One request: `count` registers from `address`, serving `members` (key, offset)."""

    address: int
    count: int
    members: tuple[tuple[str, int], ...]


def plan_reads(
    slots: Iterable[tuple[str, int]], slot_registers: int, max_registers: int, max_gap: int
) -> list[BlockRead]:
    """Merge device slots (key, address) into as few block reads as the limits allow."""
    ordered = sorted(slots, key=lambda s: s[1])
    reads: list[BlockRead] = []
    start = -1
    end = -1
    members: list[tuple[str, int]] = []
    for key, addr in ordered:
        slot_end = addr + slot_registers
        if members and addr - end <= max_gap and slot_end - start <= max_registers:
            members.append((key, addr - start))
            end = max(end, slot_end)
            continue
        if members:
            reads.append(BlockRead(start, end - start, tuple(members)))
        start, end, members = addr, slot_end, [(key, 0)]
    if members:
        reads.append(BlockRead(start, end - start, tuple(members)))
    return reads
