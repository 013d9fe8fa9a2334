"""Synthetic payment traffic with delayed labels and drift scenarios (demo, benchmarks, tests).

A seeded, pure world (no I/O): transactions with realistic contexts and a per-transaction set of eligible
actions, a latent authorisation probability for every (context, action, time) so that the true value of any
policy is computable, outcomes with their own delays (authorisation in seconds, chargebacks in months), drift
scenarios on a schedule, a simulated clock and a queue of pending reward events. A driver posts the traffic
to the service's HTTP API; nothing here imports the service or the ledger.

>>> from datetime import UTC, datetime, timedelta
>>> world = PaymentWorld("covariate", seed=0)
>>> clock, pending = SimulatedClock(world.epoch), PendingEvents()
>>> for t, tx in world.traffic(days=1, decisions_per_day=200, seed=7):
...     _ = clock.advance_to(t)
...     ready = pending.drain(clock.now)          # post these to POST /v1/rewards
...     body = tx.decision_request()              # post this to POST /v1/decisions
...     action = tx.eligible[0]                   # the service's choice: response["action_id"]
...     pending.extend(tx.outcome(action).events)
>>> len(pending) > 0, pending.next_at() > clock.now
(True, True)
"""

from banditgate.simulator.actions import CATALOGUE, ActionCatalogue, ActionSpec
from banditgate.simulator.clock import SimulatedClock
from banditgate.simulator.contexts import FEATURES, ContextBatch
from banditgate.simulator.drift import PRESETS, DriftEffects, DriftRamp, DriftScenario
from banditgate.simulator.outcomes import AUTHORISATION, CHARGEBACK, Outcome, RewardEvent, combined_reward
from banditgate.simulator.pending import PendingEvents
from banditgate.simulator.traffic import TrafficBatch, Transaction
from banditgate.simulator.world import DEFAULT_EPOCH, PaymentWorld, traffic

__all__ = [
    "AUTHORISATION",
    "CATALOGUE",
    "CHARGEBACK",
    "DEFAULT_EPOCH",
    "FEATURES",
    "PRESETS",
    "ActionCatalogue",
    "ActionSpec",
    "ContextBatch",
    "DriftEffects",
    "DriftRamp",
    "DriftScenario",
    "Outcome",
    "PaymentWorld",
    "PendingEvents",
    "RewardEvent",
    "SimulatedClock",
    "TrafficBatch",
    "Transaction",
    "combined_reward",
    "traffic",
]
