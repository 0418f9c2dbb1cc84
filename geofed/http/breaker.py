"""A per-upstream circuit breaker.

Hand-written on purpose: the maintained Python breakers (pybreaker, aiobreaker, purgatory) either are
sync-only, wrap the call themselves (which hides the upstream status we need for metrics and messages),
or pull in storage layers. This one is a small state machine driven by the caller's outcome.
"""

from __future__ import annotations

import time
from typing import Literal

State = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    def __init__(self, failures: int = 5, reset_after: float = 30.0) -> None:
        self.threshold = max(1, failures)
        self.reset_after = reset_after
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at >= self.reset_after:
            return "half-open"
        return "open"

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.reset_after - (time.monotonic() - self.opened_at))

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one trial call is let through at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_running = False

    def failure(self) -> None:
        self._trial_running = False
        self.failures += 1
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = time.monotonic()
