"""All configuration in one place: ``BANDITGATE_*`` environment variables over an optional TOML file.

The TOML file is named by ``BANDITGATE_CONFIG`` (or ``banditgate serve --config``). Environment variables
win over the file. Nested values use ``__``: ``BANDITGATE_POLICIES__DEFAULT__FLOOR=0.02``.

Example ``banditgate.toml``::

    database_url = "postgresql://banditgate@localhost/banditgate"
    api_key = "a-long-random-secret-of-16+-chars"

    [policies.default]
    exploration = "squarecb"
    exploration_params = { gamma = 200.0 }
    floor = 0.01
    features = { bin = "hashed", merchant_id = "excluded" }   # how the oracle uses context keys

    [policies.default.gate]            # the sufficiency gate of this policy (default: [gate])
    preset = "fraud"
    parameters = { tau_r = 0.15, reliability_metric = "f1" }
    reward_kind = "chargeback"

    [reward_kinds]                     # every kind POST /v1/rewards accepts: "binary" (0 or 1) or [min, max]
    authorisation = "binary"
    chargeback = "binary"
    margin_eur = [-50.0, 500.0]
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from banditgate.ledger.decision_log import DEFAULT_MAX_REVISIONS
from banditgate.ledger.outbox import INSTANCE_ID_PATTERN
from banditgate.ledger.records import DEFAULT_SEGMENT_KEYS
from banditgate.ledger.registry import POLICY_NAME_PATTERN, PolicySpec, check_policy_name
from banditgate.ledger.reward_kinds import RewardKind
from banditgate.monitoring.sufficiency import preset

if TYPE_CHECKING:  # imported where options are built: every process loads the settings, few run the gate
    from banditgate.monitoring.options import GateOptions

CONFIG_ENV = "BANDITGATE_CONFIG"
REWARD_KIND_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
#: Kafka's own rule for topic (and here group) names.
KAFKA_TOPIC_PATTERN = r"^[A-Za-z0-9._-]{1,249}$"
_BROKER_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$")

#: How a reward kind's values are declared: ``"binary"`` (0 or 1) or a range ``[minimum, maximum]``.
RewardKindSetting = Literal["binary"] | Annotated[tuple[float, float], Field(description="[minimum, maximum]")]
#: The shortest admin API key accepted without ``allow_short_api_key``: a short key can be guessed.
MIN_API_KEY_LENGTH = 16


class GateSettings(BaseModel):
    """How the sufficiency gate judges a policy's generations (see :class:`~banditgate.monitoring.gate.GateOptions`).

    ``parameters`` overrides fields of the preset: ``weights`` (a mapping of the four dimensions), ``tau_c``,
    ``tau_r``, ``freshness_lambda``, ``ks_cap``, ``reliability_metric``, ``sufficient``, ``degraded``,
    ``min_segment_size``, ``recent_labels``, ``min_decisions``, ``min_labelled``.
    """

    model_config = ConfigDict(extra="forbid")

    preset: Literal["default", "fraud", "credit"] = "default"
    parameters: dict[str, Any] = Field(default_factory=dict)
    window_days: float = Field(default=30.0, gt=0.0, le=3650.0)
    reward_kind: str = "authorisation"
    early_kind: str = "authorisation"
    segment_keys: list[str] = Field(default_factory=lambda: list(DEFAULT_SEGMENT_KEYS))
    calendar_keys: list[str] = Field(default_factory=lambda: ["hour_of_day", "day_of_week"])
    sample_size: int = Field(default=20_000, ge=100, le=10_000_000)
    max_age_hours: float = Field(
        default=24.0, gt=0.0, description="a promotion relies on a gate evaluation computed at most this long ago"
    )

    @model_validator(mode="after")
    def _valid_options(self) -> GateSettings:
        # The preset and its overrides are what the field constraints do not check.
        preset(self.preset, **self.parameters)
        return self

    def options(self, **changes: Any) -> GateOptions:
        """The gate options these settings describe (``changes`` override fields, e.g. ``window_days``)."""
        from banditgate.monitoring.options import GateOptions

        values = {**self.model_dump(exclude={"max_age_hours"}), **changes}
        parameters = preset(values.pop("preset"), **values.pop("parameters"))
        tuples = {key: tuple(values[key]) for key in ("segment_keys", "calendar_keys")}
        return GateOptions(parameters=parameters, **{**values, **tuples})


class PolicySettings(BaseModel):
    """A policy to create at start-up if the database does not have it yet, and how its gate judges it."""

    model_config = ConfigDict(extra="forbid")

    exploration: str = "squarecb"
    exploration_params: dict[str, Any] | None = Field(
        default=None, description="the rule's parameters (default: gamma 100 for squarecb, the rule's defaults else)"
    )
    floor: float = Field(default=0.01, ge=0.0, le=1.0)
    oracle: str = "lightgbm"
    oracle_params: dict[str, Any] = Field(default_factory=dict)
    features: dict[str, Any] = Field(
        default_factory=dict,
        description='how the oracle uses each context key: "numeric", "categorical", "excluded", "hashed" or '
        '{ treatment = "hashed", buckets = 128 }; keys not named are treated automatically',
    )
    description: str = ""
    gate: GateSettings | None = Field(default=None, description="this policy's gate (default: the global one)")

    @model_validator(mode="after")
    def _valid_spec(self) -> PolicySettings:
        self.spec()  # a bad rule or oracle fails when the settings load, not when the policy is created
        return self

    def rule_params(self) -> dict[str, Any]:
        if self.exploration_params is not None:
            return self.exploration_params
        return {"gamma": 100.0} if self.exploration == "squarecb" else {}

    def spec(self) -> PolicySpec:
        return PolicySpec(**{**self.model_dump(exclude={"gate"}), "exploration_params": self.rule_params()})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BANDITGATE_", env_nested_delimiter="__", extra="forbid")

    database_url: str = Field(default="sqlite:///./banditgate.db", description="SQLAlchemy URL of the ledger")
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description="host:port[,host:port...] of the Kafka brokers: decisions and rewards go to a local outbox and "
        "from there to Kafka, policies are read from database_url (unset: the embedded transport, everything in "
        "database_url)",
    )
    kafka_decisions_topic: str = Field(
        default="banditgate.decisions", pattern=KAFKA_TOPIC_PATTERN, description="topic of the decision events"
    )
    kafka_rewards_topic: str = Field(
        default="banditgate.rewards", pattern=KAFKA_TOPIC_PATTERN, description="topic of the reward events"
    )
    kafka_partitions: int = Field(
        default=6,
        ge=1,
        le=10_000,
        description="partitions of each topic when it is created, by the relay or a joiner (topics that exist are "
        "left as they are); the most joiners that share the work",
    )
    kafka_replication_factor: int = Field(
        default=1, ge=1, le=32, description="replicas of each topic when the relay creates it"
    )
    kafka_relay_batch: int = Field(
        default=2000, ge=1, le=100_000, description="most outbox events the relay publishes per acknowledged batch"
    )
    outbox_path: Path = Field(
        default=Path("./banditgate-outbox.db"),
        description="the outbox file of this serving instance (Kafka transport): a SQLite file of its own, shared "
        "by the workers of one serve; every instance needs its own",
    )
    outbox_max_backlog: int = Field(
        default=1_000_000,
        ge=1,
        le=1_000_000_000,
        description="undelivered outbox events beyond which a new decision gets a 503 (Kafka transport)",
    )
    outbox_retention_hours: float = Field(
        default=24.0,
        gt=0.0,
        le=24.0 * 365,
        description="delivered events are kept in the outbox this long, so a repeated decision_id replays its "
        "answer on the instance that made it",
    )
    instance_id: str | None = Field(
        default=None,
        pattern=INSTANCE_ID_PATTERN,
        description="this serving instance's id in event ids (unset: generated when the outbox is created and "
        "kept in it)",
    )
    joiner_group_id: str = Field(
        default="banditgate-joiner",
        pattern=KAFKA_TOPIC_PATTERN,
        description="Kafka consumer group of the joiners (banditgate joiner); joiners of one group share partitions",
    )
    joiner_hold_seconds: float = Field(
        default=3600.0,
        gt=0.0,
        le=30 * 86_400.0,
        description="a reward whose decision has not reached the ledger is held this long, then recorded as orphaned "
        "(an orphan is still joined if its decision comes later)",
    )
    joiner_max_batch: int = Field(
        default=5000, ge=1, le=100_000, description="most events a joiner writes in one database transaction"
    )
    joiner_metrics_port: int = Field(
        default=9464, ge=0, le=65_535, description="port of the joiner's Prometheus /metrics (0: none)"
    )
    api_key: SecretStr | None = Field(
        default=None,
        description=f"required by admin endpoints (X-API-Key); at least {MIN_API_KEY_LENGTH} characters; unset or "
        "empty: the admin endpoints are closed",
    )
    allow_short_api_key: bool = Field(
        default=False,
        description=f"accept an API key shorter than {MIN_API_KEY_LENGTH} characters (local experiments only)",
    )
    default_policy: str = Field(default="default", pattern=POLICY_NAME_PATTERN)
    policies: dict[str, PolicySettings] = Field(
        default_factory=lambda: {"default": PolicySettings(description="default payment-intervention policy")}
    )
    artifact_dir: Path = Field(default=Path("./artifacts"), description="where model artifacts are stored")
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    writer_max_batch: int = Field(default=512, ge=1, le=100_000)
    policy_refresh_seconds: float = Field(default=2.0, gt=0.0, le=3600.0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=16 * 1024 * 1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    gate: GateSettings = Field(default_factory=GateSettings, description="the sufficiency gate of every policy")
    reward_kinds: dict[str, RewardKindSetting] = Field(
        default_factory=lambda: {"authorisation": "binary", "chargeback": "binary"},
        description='the reward kinds POST /v1/rewards accepts, each "binary" (0 or 1) or [minimum, maximum]; '
        "any other kind is refused with 422. The gate's kinds must be binary",
    )
    max_reward_revisions: int = Field(
        default=DEFAULT_MAX_REVISIONS,
        ge=1,
        le=10_000,
        description="revisions kept per decision and reward kind; a further different value is refused with 409",
    )
    decision_process: bool = Field(
        default=True,
        description="decide and log in a companion process, so that a serving process only parses and answers "
        "HTTP and the decisions run on another core (false: everything in the serving process)",
    )
    decision_timeout_seconds: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="a decision process that leaves a request unanswered this long is killed and restarted",
    )
    http_header_timeout_seconds: float = Field(
        default=10.0,
        gt=0.0,
        le=600.0,
        description="a connection whose request line and headers are not complete this long after it opened (or "
        "after the first byte of its next request) gets a 408 and is closed: slow clients cannot hold connections",
    )
    http_max_header_bytes: int = Field(
        default=65_536,
        ge=4096,
        le=1_048_576,
        description="largest request head (request line and headers); a larger one gets a 431 and is closed",
    )
    http_keep_alive_seconds: float = Field(
        default=5.0, gt=0.0, le=3600.0, description="an idle kept-alive connection is closed after this long"
    )
    http_max_connections: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="open connections (or requests in progress) per serving process beyond which a request gets "
        "an immediate 503 instead of queueing",
    )
    decision_process_standby: bool = Field(
        default=True,
        description="keep a second decision process waiting with the deployed models' libraries imported, so that "
        "one that dies is replaced within about a second instead of the several seconds a start takes (costs the "
        "memory of one more process per serving process)",
    )
    worker_healthcheck_timeout_seconds: float = Field(
        default=30.0,
        gt=0.0,
        le=3600.0,
        description="with serve --workers N (N > 1), uvicorn's supervisor kills and replaces a worker that does not "
        "answer its health check within this time; a new worker must start within it too, which takes seconds on "
        "a loaded machine (uvicorn's own default, 5 s, made workers crash-loop there)",
    )
    gc_threshold: int = Field(
        default=50_000,
        ge=0,
        description="allocations between two young-generation garbage collections in a serving process "
        "(Python's default, 700, made collection about 15% of a busy server's time); 0 keeps Python's setting",
    )
    gate_timeout_seconds: float = Field(
        default=900.0,
        gt=0.0,
        le=86_400.0,
        description="a gate evaluation computed for POST .../gate that takes longer is stopped (its worker "
        "process killed) and answered with 503",
    )
    simulated_clock: bool = Field(
        default=False,
        description="accept the X-Banditgate-Time header as the time of a request (simulations and replays "
        "only: never in production)",
    )

    @field_validator("policies")
    @classmethod
    def _policy_names(cls, value: dict[str, PolicySettings]) -> dict[str, PolicySettings]:
        for name in value:
            check_policy_name(name)  # re.match accepted a trailing newline
        return value

    @field_validator("reward_kinds")
    @classmethod
    def _reward_kinds(cls, value: dict[str, RewardKindSetting]) -> dict[str, RewardKindSetting]:
        if not value:
            raise ValueError("declare at least one reward kind")
        for name, declared in value.items():
            if not re.fullmatch(REWARD_KIND_PATTERN, name):
                raise ValueError(f"invalid reward kind {name!r}: lowercase letters, digits and '_', at most 32")
            _rule(name, declared)  # a range that is empty or not finite fails here, naming the kind
        return value

    @model_validator(mode="after")
    def _gate_kinds_are_binary(self) -> Settings:
        # The gate judges 0/1 labels (F1, calibration, the authorisation proxies): a kind it reads must be binary.
        kinds = self.reward_kind_rules()
        gates = {"gate": self.gate} | {f"policies.{n}.gate": p.gate for n, p in self.policies.items() if p.gate}
        for where, gate in gates.items():
            for field in ("reward_kind", "early_kind"):
                kind = getattr(gate, field)
                if kind not in kinds or not kinds[kind].binary:
                    raise ValueError(
                        f"{where}.{field}: {kind!r} must be a binary reward kind declared in reward_kinds "
                        f"(binary kinds: {', '.join(sorted(k for k, r in kinds.items() if r.binary)) or 'none'})"
                    )
        return self

    @field_validator("api_key", mode="after")
    @classmethod
    def _blank_key_is_no_key(cls, value: SecretStr | None) -> SecretStr | None:
        # BANDITGATE_API_KEY= (set, but to nothing) must close the admin endpoints like an unset key, never
        # open them to an empty X-API-Key header.
        return None if value is None or not value.get_secret_value().strip() else value

    @model_validator(mode="after")
    def _long_enough_key(self) -> Settings:
        if self.api_key is not None and not self.allow_short_api_key:
            length = len(self.api_key.get_secret_value())
            if length < MIN_API_KEY_LENGTH:
                raise ValueError(
                    f"api_key (BANDITGATE_API_KEY) has {length} characters; it needs at least {MIN_API_KEY_LENGTH} "
                    "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'), or set "
                    "BANDITGATE_ALLOW_SHORT_API_KEY=true for local experiments"
                )
        return self

    @field_validator("kafka_bootstrap_servers", mode="after")
    @classmethod
    def _broker_addresses(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # set to nothing: the embedded transport
        addresses = [address.strip() for address in value.split(",")]
        for address in addresses:
            if not _BROKER_ADDRESS.fullmatch(address) or not 0 < int(address.rpartition(":")[2]) < 65536:
                raise ValueError(f"{address!r} is not host:port (expected e.g. kafka-1:9092,kafka-2:9092)")
        return ",".join(addresses)

    @model_validator(mode="after")
    def _distinct_topics(self) -> Settings:
        if self.kafka_decisions_topic == self.kafka_rewards_topic:
            raise ValueError("kafka_decisions_topic and kafka_rewards_topic must differ")
        return self

    @model_validator(mode="after")
    def _shareable_database(self) -> Settings:
        try:
            url = make_url(self.database_url)
        except ArgumentError as exc:
            raise ValueError(f"database_url: not a database URL ({exc})") from None
        in_memory = url.get_backend_name() == "sqlite" and (
            url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"
        )
        if in_memory and self.decision_process:
            raise ValueError(
                "an in-memory SQLite database cannot be shared with the decision process: use a file, or set "
                "decision_process=false (BANDITGATE_DECISION_PROCESS=false)"
            )
        return self

    def reward_kind_rules(self) -> dict[str, RewardKind]:
        """The declared reward kinds, by name, with the values each takes."""
        return {name: _rule(name, declared) for name, declared in self.reward_kinds.items()}

    def gate_for(self, policy: str) -> GateSettings:
        """The gate settings of ``policy``: its own if configured, else the global ones."""
        configured = self.policies.get(policy)
        return configured.gate if configured is not None and configured.gate is not None else self.gate

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get(CONFIG_ENV)
        if config:
            if not Path(config).is_file():
                raise ValueError(f"{CONFIG_ENV}={config!r}: no such file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)


def _rule(name: str, declared: RewardKindSetting) -> RewardKind:
    if declared == "binary":
        return RewardKind(name)
    minimum, maximum = declared
    return RewardKind(name, minimum=minimum, maximum=maximum, binary=False)
