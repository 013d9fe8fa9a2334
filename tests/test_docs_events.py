"""docs/events.md: its example events are valid events of the schema, and say what the text says they do."""

from __future__ import annotations

import json
import re
from pathlib import Path

from banditgate.ledger.events import SCHEMA_VERSION, DecisionEvent, RewardEvent, decode, encode

DOC = Path(__file__).resolve().parents[1] / "docs" / "events.md"


def test_the_documented_examples_decode() -> None:
    examples = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(examples) == 2
    decision, reward = (decode(example.encode()) for example in examples)
    assert isinstance(decision, DecisionEvent) and isinstance(reward, RewardEvent)
    assert decision.version == reward.version == SCHEMA_VERSION
    assert decision.decision_id == reward.decision_id == "tx-0001"
    assert decision.decision.propensity == decision.decision.probabilities[1]
    for event, example in ((decision, examples[0]), (reward, examples[1])):
        key, value = encode(event)
        assert key == b"tx-0001" and json.loads(value) == json.loads(example)  # nothing in it was ignored
