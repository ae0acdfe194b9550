"""Configuration from environment variables (prefix `REHABGATE_`, plus plain `REDIS_URL`)
and an optional dotenv file named by `REHABGATE_CONFIG` (environment variables win).

Invalid settings end start-up with one line per error naming the variable, and exit
code 2 (`settings_or_exit`), before anything connects anywhere.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import socket
import sys
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import (
    AliasChoices,
    AnyHttpUrl,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from .clinics import ClinicConfig, ClinicId


def default_consumer_name() -> str:
    """Unique per process: a restarted process never inherits a dead one's name by accident."""
    return f"{socket.gethostname()}-{os.getpid()}"


class WebhookEndpoint(BaseModel):
    """One clinic's webhook receiver. The URL comes from configuration, never from an
    event, so a clinic event cannot make the notifier call an arbitrary address."""

    url: AnyHttpUrl
    secret: SecretStr = Field(
        description="Standard Webhooks signing secret: `whsec_` + base64 of 24-64 random bytes."
    )

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        try:
            key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
        except binascii.Error as exc:
            raise ValueError("secret: expected whsec_ followed by base64") from exc
        if not raw.startswith("whsec_") or not 24 <= len(key) <= 64:
            raise ValueError("secret: expected whsec_ followed by base64 of 24-64 bytes")
        return value

    def key(self) -> bytes:
        """The HMAC key: the base64-decoded part of the secret."""
        return base64.b64decode(self.secret.get_secret_value().removeprefix("whsec_"))


class CommonSettings(BaseSettings):
    """What every rehabgate process reads: Redis, consuming, logging, HTTP host."""

    model_config = SettingsConfigDict(env_prefix="REHABGATE_", extra="ignore")

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "REHABGATE_REDIS_URL"),
        description="Redis/Valkey to use; when unset, `rehabgate up` starts an embedded server.",
    )
    redis_cluster: bool = Field(
        default=False,
        description="REDIS_URL names a node of a Redis Cluster (services/common/connections.py).",
    )
    partitions: int = Field(default=1, ge=1, le=1024, description="Hash-tag partitions.")
    consumer: str = Field(default_factory=default_consumer_name)
    batch_size: int = Field(default=100, ge=1, le=10_000)
    claim_idle_ms: int = Field(
        default=30_000, ge=100, description="Pending this long, an entry is reclaimed."
    )
    takeover_after_ms: int = Field(
        default=10_000,
        ge=1_000,
        description="A gatekeeper whose heartbeat is this old (or gone) is dead: the others "
        "take over its pending entries before applying its clients' later events.",
    )
    shutdown_grace_s: float = Field(
        default=3.0,
        gt=0,
        le=60,
        description="On SIGTERM, longest wait for the batches and sends under way; what is cut "
        "short stays pending (or claimed) and is redone elsewhere. The process exits at the "
        "latest 5 s after this.",
    )
    max_deliveries: int = Field(
        default=5, ge=1, description="After this many deliveries an entry is dead-lettered."
    )
    retention_s: float = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="Work-stream entries younger than this are never trimmed, even when consumed.",
    )
    trim_interval_s: float = Field(
        default=60, gt=0, description="How often each service trims the streams it consumes."
    )
    log_json: bool | None = Field(default=None, description="JSON logs; default: unless a TTY.")
    log_level: str = "INFO"
    http_host: str = Field(
        default="127.0.0.1", description="Where both services serve HTTP (0.0.0.0 in containers)."
    )
    otlp_endpoint: AnyHttpUrl | None = Field(
        default=None,
        description="OpenTelemetry: export spans over OTLP/HTTP to this collector "
        "(e.g. http://localhost:4318); unset, trace context is carried but not exported.",
    )
    ready_timeout_s: float = Field(
        default=1.0, gt=0, description="/health/ready: longest wait for Redis to answer PING."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the `REHABGATE_CONFIG` file: one file
        holds a deployment's settings, and an environment variable still overrides it."""
        sources = [init_settings, env_settings]
        if config_file := os.environ.get(CONFIG_VARIABLE):
            sources.append(DotEnvSettingsSource(settings_cls, env_file=Path(config_file)))
        return (*sources, file_secret_settings)


class GatekeeperSettings(CommonSettings):
    """What the gatekeeper reads besides the common settings."""

    protocol_dirs: list[Path] = Field(
        default_factory=list, description="Extra directories of clinic protocol YAML files."
    )
    http_port: int = Field(
        default=8080,
        ge=0,
        le=65535,
        description="Gatekeeper HTTP port: physio pages, health, metrics.",
    )
    clinic_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Programs' read access to the physio JSON API: clinic id -> token (JSON). "
        "A token reads, never acts; people sign in as themselves.",
    )
    # -- physios signing in as themselves (issue 17; see gatekeeper/physio_web) ------
    physio_credentials: Path | None = Field(
        default=None,
        description="File of per-physio credentials (hashed) that `rehabgate physio add` "
        "writes; unset, nobody signs in with a password.",
    )
    physio_session_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs physio session cookies and CSRF tokens; unset, a random "
        "one per process (sessions end on restart; set it when several gatekeepers serve).",
    )
    physio_session_max_age_s: int = Field(
        default=43_200, ge=60, le=30 * 86_400, description="How long a physio session lasts."
    )
    physio_sso_header: str | None = Field(
        default=None,
        description="Header a single-sign-on proxy names the physio in (e.g. "
        "X-Forwarded-User); unset, no proxy sign-in.",
    )
    physio_sso_trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) the single-sign-on proxy connects from (JSON list).",
    )
    physio_sso_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret the proxy sends in X-Rehabgate-Proxy-Secret (instead of, "
        "or besides, a trusted network).",
    )
    physio_stepped_back_days: float = Field(
        default=7, gt=0, description="Needs attention: stepped back within this many days."
    )
    physio_inactive_days: float = Field(
        default=5, gt=0, description="Needs attention: no session or check-in for this long."
    )
    physio_held_long_factor: float = Field(
        default=2,
        gt=1,
        description="Needs attention: at a stage this many times its minimum days.",
    )
    physio_action_wait_s: float = Field(
        default=10,
        ge=0,
        description="After a physio's action, how long the page waits for the decision "
        "before showing it as pending (it refreshes until it lands).",
    )
    # -- tenants and Redis users (issue 7; see clinics.py and common/acl.py) ----------
    clinics: dict[ClinicId, ClinicConfig] = Field(
        default_factory=dict,
        description="Tenants: clinic id -> {require_signature, keys} (JSON). Set, each clinic "
        "publishes to rehabgate:inbound:<clinic_id>; unset, rehabgate:inbound (trusted network).",
    )
    signature_tolerance_s: float = Field(
        default=300, gt=0, description="Signed events: largest age (or lead) of `timestamp`."
    )
    max_event_bytes: int = Field(
        default=65_536,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Largest inbound entry (all its fields); larger ones are dead-lettered "
        "unparsed, and a dead letter keeps at most this much of the payload.",
    )
    max_future_s: float = Field(
        default=86_400,
        ge=0,
        description="How far after the server's clock an event's occurred_at may lie.",
    )


class NotifierSettings(CommonSettings):
    """What the notifier reads besides the common settings."""

    notifier_http_port: int = Field(
        default=8081, ge=0, le=65535, description="Notifier HTTP port: health and metrics."
    )
    default_locale: str = Field(
        default="en", description="Message language when a client has no contact or locale."
    )
    template_dir: Path | None = Field(
        default=None,
        description="Per-clinic template overrides: <dir>/<clinic_id>/<locale>/<name>.j2.",
    )
    held_digest: bool = Field(
        default=False, description="Also message held decisions (a short progress note)."
    )
    coalesce_window_s: float = Field(
        default=300,
        ge=0,
        description="Decisions of one client this close in event time become one message.",
    )
    outbox_poll_s: float = Field(
        default=1.0, gt=0, description="How often the notifier sends held messages now due."
    )
    delivery_attempts: int = Field(
        default=5, ge=1, le=20, description="Tries per message on email/webhook channels."
    )
    delivery_deadline_s: float = Field(
        default=60, gt=0, description="Time budget for all tries of one email/webhook message."
    )
    delivery_backoff_s: float = Field(
        default=0.5, gt=0, description="First retry wait; doubles per try, with jitter."
    )
    delivery_backoff_max_s: float = Field(default=10, gt=0, description="Longest retry wait.")
    smtp_host: str | None = Field(
        default=None, description="SMTP server; unset, the email channel is not configured."
    )
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["auto", "starttls", "tls", "none"] = Field(
        default="auto",
        description="auto: STARTTLS when offered; starttls: required; tls: implicit TLS.",
    )
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str | None = Field(
        default=None, description="From address of client e-mails (needed with smtp_host)."
    )
    smtp_timeout_s: float = Field(default=30, gt=0, description="Per-try SMTP timeout.")
    webhooks: dict[str, WebhookEndpoint] = Field(
        default_factory=dict,
        description="Webhook channel: clinic id -> {url, secret} (JSON).",
    )
    webhook_timeout_s: float = Field(default=10, gt=0, description="Per-try webhook timeout.")


class IngestSettings(CommonSettings):
    """What the HTTPS ingest reads besides the common settings (services/ingest). The
    clinics, the signature window and the intake limits are the gatekeeper's own, so
    the edge applies the same contract."""

    clinics: dict[ClinicId, ClinicConfig] = Field(
        default_factory=dict, description="Tenants, as the gatekeeper reads them."
    )
    signature_tolerance_s: float = Field(default=300, gt=0)
    max_event_bytes: int = Field(default=65_536, ge=1024, le=16 * 1024 * 1024)
    max_future_s: float = Field(default=86_400, ge=0)
    ingest_http_port: int = Field(
        default=8082, ge=0, le=65535, description="Ingest HTTP port: /v1/events, health, metrics."
    )
    ingest_max_batch: int = Field(
        default=500, ge=1, le=10_000, description="Most events in one POST /v1/events."
    )
    ingest_max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Largest request body; a larger one is refused before it is parsed.",
    )
    ingest_rate_per_s: float = Field(
        default=1000, gt=0, description="Events per second one clinic may post (per process)."
    )
    ingest_burst: int = Field(
        default=2000, ge=1, description="Events one clinic may post at once above the rate."
    )
    ingest_record_ttl_s: int = Field(
        default=30 * 24 * 3600,
        ge=3600,
        description="How long an accepted event id is remembered (idempotency and GET).",
    )


class Settings(GatekeeperSettings, NotifierSettings, IngestSettings):
    """Everything: what the command-line tools read (`rehabgate up` runs both
    services, `acl generate` writes every user)."""

    acl_passwords: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="`rehabgate acl generate`: Redis user -> password (JSON); others generated.",
    )
    # -- notifier: client messages ------------------------------------------------


#: Names the optional dotenv file of settings.
CONFIG_VARIABLE = "REHABGATE_CONFIG"


AnySettings = TypeVar("AnySettings", bound=CommonSettings)


class InvalidSettings(ValueError):
    """Settings that cannot be used; the message has one line per error."""


def env_name(field: str) -> str:
    """The variable that sets a field: its first alias, else `REHABGATE_<FIELD>`."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"REHABGATE_{field.upper()}"


def load_settings(kind: type[AnySettings] = Settings) -> AnySettings:  # type: ignore[assignment]
    """`kind` (every setting by default; a service its own) from the environment and
    the config file, or `InvalidSettings` naming every variable that is wrong and why
    (never its value: some are secrets)."""
    config_file = os.environ.get(CONFIG_VARIABLE)
    if config_file and not Path(config_file).is_file():
        raise InvalidSettings(f"{CONFIG_VARIABLE}: no such file: {config_file}")
    try:
        return kind()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field, *inner = (str(part) for part in error["loc"])
            name = env_name(field) if field in Settings.model_fields else field
            where = f"{'.'.join(inner)}: " if inner else ""
            lines.append(f"{name}: {where}{error['msg']}")
        raise InvalidSettings("\n".join(lines)) from exc
    except SettingsError as exc:  # a JSON setting that does not parse
        found = re.search(r'field "(\w+)"', str(exc))
        name = env_name(found[1]) if found and found[1] in Settings.model_fields else str(exc)
        raise InvalidSettings(f"{name}: not valid JSON ({exc.__cause__})") from exc


def settings_or_exit(kind: type[AnySettings] = Settings) -> AnySettings:  # type: ignore[assignment]
    """`load_settings` for a command or service start: invalid settings print
    `invalid configuration: VARIABLE: why` lines on stderr and exit with code 2."""
    try:
        return load_settings(kind)
    except InvalidSettings as exc:
        for line in str(exc).splitlines():
            print(f"invalid configuration: {line}", file=sys.stderr)
        raise SystemExit(2) from None
