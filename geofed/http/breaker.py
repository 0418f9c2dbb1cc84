"""A per-upstream circuit breaker.

Hand-written on purpose: the maintained Python breakers (pybreaker, aiobreaker, purgatory) either are
sync-only, wrap the call themselves (which hides the upstream status we need for metrics and messages),
or pull in storage layers. This one is a small state machine driven by the caller's outcome:

- closed: every call goes out; `threshold` consecutive failures open the circuit;
- open: calls fail fast for `reset_after` seconds;
- half-open: one trial call goes out at a time; its success closes the circuit, its failure opens it again.
  A trial that ends without a verdict (`release()`: cancelled, answered from a cache) lets the next one try;
  a trial that never reports back (its caller vanished) is given up after `reset_after` seconds, so the
  circuit can never stay half-open for ever.
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
        self._trial_since: float | None = None

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
        if state == "open":
            return False
        now = time.monotonic()
        if self._trial_since is None or now - self._trial_since >= self.reset_after:
            self._trial_since = now
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial_since = None

    def failure(self) -> None:
        self._trial_since = None
        self.failures += 1
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = time.monotonic()

    def release(self) -> None:
        """The call this breaker let through ended without a verdict: the next call may be the trial."""
        self._trial_since = None
