"""An execution plan: how one numeric backend runs on this machine, for batches (indexing) and for queries.

A plan's name is also how a user forces one (`SEMSEARCH_PLAN`): the backend, then `key=value` fields, e.g.
`onnx-int8,lanes=2x1,rows=8,tokens=0,query=1,micro=split`; a forced plan may name only some fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from semsearch.errors import ConfigError
from semsearch.index.model.export.onnx_export import ONNX_BACKENDS
from semsearch.settings import AUTO as AUTO

MICRO = ("split", "whole")
DEFAULT = "default"  # SEMSEARCH_PLAN: the built-in plan
_KEY = "SEMSEARCH_PLAN"


@dataclass(frozen=True)
class Plan:
    """Batches run on `lanes` sessions of `lane_threads` intra-op threads each, side by side, each call holding
    at most `rows` texts and (when `tokens` is set) at most `tokens` padded tokens. One query runs on a session
    of `query_threads` threads; a micro-batch of queries is split across the lanes or run as one call (`micro`).
    Only `backend` changes the vectors (beyond float rounding; int8 runs one text per call, so `rows` does not): the
    rest is free to differ between machines."""

    backend: str
    lanes: int
    lane_threads: int
    rows: int
    tokens: int
    query_threads: int
    micro: str

    @property
    def name(self) -> str:
        return (
            f"{self.backend},lanes={self.lanes}x{self.lane_threads},rows={self.rows},tokens={self.tokens},"
            f"query={self.query_threads},micro={self.micro}"
        )

    @property
    def threads(self) -> int:
        """Threads the batches use together (queries use `query_threads`)."""
        return self.lanes * self.lane_threads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Plan:
        """A plan read back from JSON; ValueError when it is not one."""
        if not isinstance(data, dict) or set(data) != {f.name for f in dataclasses.fields(cls)}:
            raise ValueError(f"not a plan: {data!r}")
        plan = cls(**data)
        if not isinstance(plan.backend, str) or not isinstance(plan.micro, str):
            raise ValueError(f"not a plan: {data!r}")
        problem = plan.problem(max(plan.threads, plan.query_threads))
        if problem or not all(isinstance(v, int) and not isinstance(v, bool) for v in _numbers(plan)):
            raise ValueError(f"not a plan: {data!r} ({problem})")
        return plan

    def problem(self, threads: int) -> str | None:
        """Why this plan cannot run with `threads` threads, or None."""
        if self.backend not in ONNX_BACKENDS:
            return f"the backend must be one of {', '.join(ONNX_BACKENDS)}"
        if min(self.lanes, self.lane_threads, self.rows, self.query_threads) < 1 or self.tokens < 0:
            return "lanes, threads, rows and query threads must be >= 1 and tokens >= 0"
        if self.threads > threads or self.query_threads > threads:
            return f"it uses more threads than SEMSEARCH_THREADS={threads}"
        if self.micro not in MICRO:
            return f"micro must be one of {', '.join(MICRO)}"
        return None

    def replace(self, **changes: Any) -> Plan:
        return dataclasses.replace(self, **changes)


def _numbers(plan: Plan) -> tuple[int, ...]:
    return plan.lanes, plan.lane_threads, plan.rows, plan.tokens, plan.query_threads


def default_plan(backend: str, threads: int, batch_size: int) -> Plan:
    """The built-in plan (`SEMSEARCH_PLAN=default`), the engine's execution before plans were measured: one
    one-thread lane per thread sharing `batch_size` texts, one query on every thread, micro-batches split."""
    threads = max(1, threads)
    return Plan(backend, threads, 1, -(-batch_size // threads), 0, threads, "split")


def parse_plan(text: str, base: Plan, threads: int) -> Plan:
    """`base` with the fields a forced plan names changed (its backend too, when it names one); ConfigError
    naming the setting when the text is not a plan or does not fit `threads`."""
    plan = base
    for item in (part.strip() for part in text.split(",")):
        key, sep, value = item.partition("=")
        try:
            if not sep and item in ONNX_BACKENDS:
                plan = plan.replace(backend=item)
            elif key == "lanes":
                lanes, _, each = value.partition("x")
                plan = plan.replace(lanes=int(lanes), lane_threads=int(each or 1))
            elif key in ("rows", "tokens", "query"):
                plan = plan.replace(**{"query_threads" if key == "query" else key: int(value)})
            elif key == "micro":
                plan = plan.replace(micro=value)
            else:
                raise ValueError(item)
        except ValueError:
            raise ConfigError(
                f"{_KEY}={text!r} is not allowed: use auto, default, or a plan such as "
                f"'onnx-int8,lanes=2x1,rows=8,tokens=0,query=1,micro=split' ({item!r} is not one of its fields)"
            ) from None
    problem = plan.problem(threads)
    if problem:
        raise ConfigError(f"{_KEY}={text!r} is not allowed: {problem}")
    return plan
