"""The scenario clock: scenario time runs `speed` times faster than real time from a fixed anchor.

The censor daemon writes the anchor once (``clock`` in the lab's state directory); anyone can then compute the
scenario time without asking a process, so probes stamp measurements with scenario time cheaply.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ScenarioClock", "read_clock", "write_clock"]


@dataclass(frozen=True, slots=True)
class ScenarioClock:
    start: dt.datetime  # scenario time at the anchor
    end: dt.datetime
    speed: float
    epoch: float  # real time (time.time()) at the anchor

    def now(self, real: float | None = None) -> dt.datetime:
        real = time.time() if real is None else real
        return self.start + dt.timedelta(seconds=(real - self.epoch) * self.speed)

    def real_time(self, t: dt.datetime) -> float:
        """The real time.time() at which scenario time `t` happens."""
        return self.epoch + (t - self.start).total_seconds() / self.speed

    def ended(self, real: float | None = None) -> bool:
        return self.now(real) >= self.end

    def to_json(self) -> dict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "speed": self.speed,
                "epoch": self.epoch}

    @classmethod
    def from_json(cls, doc: dict) -> ScenarioClock:
        return cls(dt.datetime.fromisoformat(doc["start"]), dt.datetime.fromisoformat(doc["end"]),
                   float(doc["speed"]), float(doc["epoch"]))


def write_clock(path: Path, clock: ScenarioClock) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(clock.to_json()) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_clock(path: Path) -> ScenarioClock:
    return ScenarioClock.from_json(json.loads(path.read_text(encoding="utf-8")))
