"""The clock: wall time as aware UTC datetimes and Unix seconds, replaceable in tests.

Services that decide by time (rate-limit windows, holds, throttle windows) take a `Clock`
instead of calling `time` directly, so a test can put them at any moment without sleeping.
"""
from __future__ import annotations

import datetime as dt
import time


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime) -> dt.datetime:
    """An aware UTC datetime: Motor returns aware ones (tz_aware=True), mongomock naive UTC,
    and a date typed into a form is meant as UTC."""
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


class Clock:
    """Wall-clock time. `FixedClock` in tests subclasses it."""

    def time(self) -> float:
        """Unix seconds."""
        return time.time()

    def now(self) -> dt.datetime:
        """The current time, aware UTC."""
        return dt.datetime.fromtimestamp(self.time(), dt.timezone.utc)


class FixedClock(Clock):
    """A clock that moves only when told to (tests)."""

    def __init__(self, at: float) -> None:
        self.at = at

    def time(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds
