"""Environment -> typed settings, read once at start-up."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from h2s_checkout.domain.errors import InvalidRequest
from h2s_checkout.domain.events import ReservedTargets, check_url, secret_key, service_targets
from h2s_checkout.domain.return_urls import template_problem


class SettingsError(ValueError):
    """A bad environment value; the message names the variable."""


# The key this service sends a Stripe emulator: the embedded stack's, or one at
# STRIPE_API_BASE when no STRIPE_API_KEY is given. The emulator accepts any test-mode key
# (sk_test_..., as Stripe's test mode accepts any valid one of the account), so which one
# is ours to choose, and the settings need nothing of the emulator's package: only
# embedded_stack.py imports it, to start it.
EMULATOR_API_KEY = "sk_test_h2s_emulator"
POOLER_VALUES = ("none", "transaction", "transaction-prepared")


@dataclass(frozen=True, slots=True)
class Settings:
    port: int = 8000
    host: str = "127.0.0.1"
    database_url: str | None = None
    # What DATABASE_URL leads to (POOLER_VALUES): "transaction", a transaction pooler
    # (PgBouncer's pool_mode = transaction) where nothing may outlive a transaction: no
    # named prepared statements, no LISTEN, no session advisory lock; "transaction-prepared",
    # one that keeps prepared statements itself (PgBouncer 1.21+, max_prepared_statements).
    db_pooler: str = "none"
    # The server itself, past the pooler: for LISTEN and migrations.
    database_direct_url: str | None = None
    data_dir: Path = Path(".data")
    stripe_api_key: str | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_timeout_s: float = 10.0
    stripe_max_retries: int = 2
    admin_token: str | None = None
    public_base_url: str = "http://localhost:8000"
    # Templates of a storefront's own return pages; None: this service's /checkout/ pages.
    success_url: str | None = None
    cancel_url: str | None = None
    session_ttl_minutes: int = 60
    checkout_lease_s: int = 90
    key_retention_hours: int = 72
    reconcile_interval_s: int = 30
    db_pool_min: int = 2
    db_pool_max: int = 10
    db_timeout_s: float = 10.0
    checkout_phase_slots: int = 6
    max_body_bytes: int = 64 * 1024
    log_format: str = "auto"
    log_level: str = "info"
    refund_late_payments: bool = True
    # When the card is charged: at_booking (the session captures at once) or on_completion
    # (the session holds the amount; completing the job captures it). Stored with each
    # checkout when it begins.
    capture: str = "at_booking"
    # New checkouts per minute per client address, per customer email and per key with the
    # checkout scope (instead of the address), failed sign-ins per client address and key
    # per 15 minutes; 0 turns a limit off.
    limit_checkouts_per_minute_ip: int = 30
    limit_checkouts_per_minute_email: int = 10
    limit_checkouts_per_minute_key: int = 600
    limit_login_failures: int = 10
    # Peers whose X-Forwarded-For is believed (addresses or CIDR blocks).
    trusted_proxies: tuple[str, ...] = ()
    events_poll_s: float = 1.0
    events_timeout_s: float = 15.0
    # Ended deliveries are kept this long for the timeline and the deliveries list.
    event_retention_days: int = 30
    events_allow_private: bool = False
    event_endpoint_url: str | None = None
    event_endpoint_secret: str | None = None
    # OpenTelemetry traces, exported over OTLP/HTTP (OTEL_EXPORTER_OTLP_ENDPOINT or its
    # _TRACES_ variant; the SDK reads the OTEL_* variables itself). None: tracing off.
    otel_endpoint: str | None = None
    # A trace viewer's URL with {trace_id}: the timeline links each step's trace to it.
    trace_url_template: str | None = None

    @property
    def tracing(self) -> bool:
        return self.otel_endpoint is not None

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def transaction_pooler(self) -> bool:
        return self.db_pooler != "none"

    @property
    def prepared_statements(self) -> bool:
        """Whether the pool may keep named prepared statements on DATABASE_URL."""
        return self.db_pooler != "transaction"

    @property
    def session_database_url(self) -> str | None:
        """Where session state (LISTEN, a session advisory lock) lasts as long as the
        connection: the direct URL, else DATABASE_URL unless it leads to a transaction
        pooler; None when there is no such place."""
        if self.database_direct_url is not None:
            return self.database_direct_url
        return None if self.transaction_pooler else self.database_url

    @property
    def payment_mode(self) -> str:
        """``emulator`` (embedded or given by address) or ``stripe`` (the real API)."""
        if self.stripe_api_base is None and self.stripe_api_key is None:
            return "embedded-emulator"
        if self.stripe_api_base is not None:
            return "emulator"
        return "stripe"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


CAPTURE_POLICIES = ("at_booking", "on_completion")


def _capture(env: Mapping[str, str]) -> str:
    raw = (env.get("H2S_CAPTURE") or "at_booking").strip().lower()
    if raw not in CAPTURE_POLICIES:
        raise SettingsError(f"H2S_CAPTURE must be at_booking or on_completion, got {raw!r}")
    return raw


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    parsed = urlparse(raw)
    if parsed.scheme not in schemes or not (parsed.netloc or parsed.query):
        raise SettingsError(f"{name} must be a URL starting with {' or '.join(schemes)}://")
    return raw if name in ("DATABASE_URL", "H2S_DATABASE_DIRECT_URL") else raw.rstrip("/")


def _return_url(env: Mapping[str, str], name: str, *, success: bool) -> str | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    problem = template_problem(raw, success=success)
    if problem:
        raise SettingsError(f"{name} {problem}")
    return raw


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name, "")
    found: list[str] = []
    for part in raw.replace(" ", ",").split(","):
        if not part:
            continue
        try:
            found.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise SettingsError(
                f"{name} must be addresses or CIDR blocks separated by commas, got {part!r}"
            ) from None
    return tuple(found)


def _optional(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    return raw if raw else None


def _pooler(env: Mapping[str, str], database_url: str | None) -> tuple[str, str | None]:
    """H2S_DB_POOLER and H2S_DATABASE_DIRECT_URL: both say something about DATABASE_URL, so
    neither goes without it (the embedded database has nothing in front of it)."""
    pooler = env.get("H2S_DB_POOLER", "").strip().lower() or "none"
    if pooler not in POOLER_VALUES:
        raise SettingsError(
            f"H2S_DB_POOLER must be {', '.join(POOLER_VALUES[:-1])} or {POOLER_VALUES[-1]}, "
            f"got {pooler!r}"
        )
    direct_url = _url(env, "H2S_DATABASE_DIRECT_URL", ("postgres", "postgresql"))
    if database_url is None:
        if pooler != "none":
            raise SettingsError("H2S_DB_POOLER describes DATABASE_URL: set DATABASE_URL too")
        if direct_url is not None:
            raise SettingsError("H2S_DATABASE_DIRECT_URL goes with DATABASE_URL: set both")
    return pooler, direct_url


def _event_endpoint(
    env: Mapping[str, str], allow_private: bool, reserved: ReservedTargets
) -> tuple[str | None, str | None]:
    """H2S_EVENT_ENDPOINT_URL and _SECRET: both or neither, each checked as the API would
    (the embedded emulator's address, known only once it runs, is judged at delivery)."""
    url = _optional(env, "H2S_EVENT_ENDPOINT_URL")
    secret = _optional(env, "H2S_EVENT_ENDPOINT_SECRET")
    if (url is None) != (secret is None):
        raise SettingsError("H2S_EVENT_ENDPOINT_URL and H2S_EVENT_ENDPOINT_SECRET go together")
    if url is None or secret is None:
        return None, None
    try:
        check_url(url, allow_private=allow_private, reserved=reserved)
    except InvalidRequest as exc:
        raise SettingsError(f"H2S_EVENT_ENDPOINT_URL: {exc.message}") from None
    try:
        secret_key(secret)
    except ValueError as exc:
        raise SettingsError(f"H2S_EVENT_ENDPOINT_SECRET: {exc}") from None
    return url, secret


_SAMPLERS = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)


def _otel(env: Mapping[str, str]) -> str | None:
    """The OTLP endpoint when tracing is on: an endpoint is set and OTEL_SDK_DISABLED is
    not true. The sampler variables are checked here, since the SDK falls back to its
    default with only a warning, and an installed SDK too."""
    endpoint = _optional(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or _optional(
        env, "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if endpoint is None or _bool(env, "OTEL_SDK_DISABLED", False):
        return None
    if urlparse(endpoint).scheme not in ("http", "https"):
        raise SettingsError("OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL")
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler and sampler not in _SAMPLERS:
        raise SettingsError(f"OTEL_TRACES_SAMPLER must be one of {', '.join(sorted(_SAMPLERS))}")
    if sampler.endswith("traceidratio"):
        _float(env, "OTEL_TRACES_SAMPLER_ARG", 1.0, 0.0, 1.0)
    try:
        found = all(
            importlib.util.find_spec(name) is not None
            for name in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
        )
    except ModuleNotFoundError:
        found = False
    if not found:
        raise SettingsError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed: "
            "pip install 'h2s-checkout[otel]'"
        )
    return endpoint


def _trace_url_template(env: Mapping[str, str]) -> str | None:
    raw = _optional(env, "H2S_TRACE_URL_TEMPLATE")
    if raw is None:
        return None
    if "{trace_id}" not in raw or urlparse(raw).scheme not in ("http", "https"):
        raise SettingsError("H2S_TRACE_URL_TEMPLATE must be an http(s) URL with {trace_id}")
    return raw


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every variable; a bad value names itself in the error."""
    env = os.environ if env is None else env
    stripe_key = _optional(env, "STRIPE_API_KEY")
    if stripe_key is not None and not stripe_key.startswith(("sk_test_", "sk_live_", "rk_")):
        raise SettingsError("STRIPE_API_KEY must be a Stripe secret key (sk_test_..., sk_live_...)")
    webhook_secret = _optional(env, "STRIPE_WEBHOOK_SECRET")
    if webhook_secret is not None and not webhook_secret.startswith("whsec_"):
        raise SettingsError("STRIPE_WEBHOOK_SECRET must be a webhook signing secret (whsec_...)")
    admin_token = _optional(env, "H2S_ADMIN_TOKEN")
    if admin_token is not None and len(admin_token) < 16:
        raise SettingsError("H2S_ADMIN_TOKEN must be at least 16 characters")
    log_format = env.get("H2S_LOG_FORMAT", "auto")
    if log_format not in ("auto", "json", "console"):
        raise SettingsError("H2S_LOG_FORMAT must be auto, json or console")
    log_level = env.get("H2S_LOG_LEVEL", "info").lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise SettingsError("H2S_LOG_LEVEL must be debug, info, warning or error")
    port = _int(env, "PORT", 8000, 1, 65535)
    database_url = _url(env, "DATABASE_URL", ("postgres", "postgresql"))
    db_pooler, direct_url = _pooler(env, database_url)
    # The embedded stack (no DATABASE_URL) is a machine of one's own: subscribers on it may
    # be local unless said otherwise.
    allow_private = _bool(
        env, "H2S_EVENTS_ALLOW_PRIVATE", default=_optional(env, "DATABASE_URL") is None
    )
    public_base_url = _url(env, "PUBLIC_BASE_URL", ("http", "https"))
    host = env.get("HOST", "127.0.0.1")
    stripe_api_base = _url(env, "STRIPE_API_BASE", ("http", "https"))
    reserved = ReservedTargets(
        service_targets(
            host=host,
            port=port,
            public_base_url=public_base_url or f"http://localhost:{port}",
            provider_base_url=stripe_api_base,
        )
    )
    event_url, event_secret = _event_endpoint(env, allow_private, reserved)
    settings = Settings(
        port=port,
        host=host,
        database_url=database_url,
        db_pooler=db_pooler,
        database_direct_url=direct_url,
        data_dir=Path(env.get("H2S_DATA_DIR", ".data")),
        stripe_api_key=stripe_key,
        stripe_api_base=stripe_api_base,
        stripe_webhook_secret=webhook_secret,
        stripe_timeout_s=_float(env, "H2S_STRIPE_TIMEOUT_S", 10.0, 0.1, 120.0),
        stripe_max_retries=_int(env, "H2S_STRIPE_MAX_RETRIES", 2, 0, 10),
        admin_token=admin_token,
        public_base_url=public_base_url or f"http://localhost:{port}",
        success_url=_return_url(env, "H2S_SUCCESS_URL", success=True),
        cancel_url=_return_url(env, "H2S_CANCEL_URL", success=False),
        session_ttl_minutes=_int(env, "H2S_SESSION_TTL_MINUTES", 60, 31, 23 * 60 + 55),
        checkout_lease_s=_int(env, "H2S_CHECKOUT_LEASE_S", 90, 1, 3600),
        # Stripe keeps keys at least 24 h; so do we.
        key_retention_hours=_int(env, "H2S_KEY_RETENTION_HOURS", 72, 24, 24 * 365),
        reconcile_interval_s=_int(env, "H2S_RECONCILE_INTERVAL_S", 30, 0, 3600),
        db_pool_min=_int(env, "H2S_DB_POOL_MIN", 2, 0, 100),
        db_pool_max=_int(env, "H2S_DB_POOL_MAX", 10, 1, 200),
        # Below the 30 s at which storefronts and load balancers give up on a request.
        db_timeout_s=_float(env, "H2S_DB_TIMEOUT_S", 10.0, 0.5, 120.0),
        checkout_phase_slots=_int(env, "H2S_CHECKOUT_PHASE_SLOTS", 6, 1, 200),
        max_body_bytes=_int(env, "H2S_MAX_BODY_BYTES", 64 * 1024, 1024, 10 * 1024 * 1024),
        log_format=log_format,
        log_level=log_level,
        refund_late_payments=_bool(env, "H2S_REFUND_LATE_PAYMENTS", True),
        capture=_capture(env),
        limit_checkouts_per_minute_ip=_int(
            env, "H2S_LIMIT_CHECKOUTS_PER_MINUTE_IP", 30, 0, 100_000
        ),
        limit_checkouts_per_minute_email=_int(
            env, "H2S_LIMIT_CHECKOUTS_PER_MINUTE_EMAIL", 10, 0, 100_000
        ),
        limit_checkouts_per_minute_key=_int(
            env, "H2S_LIMIT_CHECKOUTS_PER_MINUTE_KEY", 600, 0, 1_000_000
        ),
        limit_login_failures=_int(env, "H2S_LIMIT_LOGIN_FAILURES", 10, 0, 10_000),
        trusted_proxies=_networks(env, "H2S_TRUSTED_PROXIES"),
        events_poll_s=_float(env, "H2S_EVENTS_POLL_S", 1.0, 0, 60),
        events_timeout_s=_float(env, "H2S_EVENTS_TIMEOUT_S", 15.0, 0.1, 120),
        # Above the retry schedule (about 28 h), so a failed delivery can still be retried.
        event_retention_days=_int(env, "H2S_EVENT_RETENTION_DAYS", 30, 3, 3650),
        events_allow_private=allow_private,
        event_endpoint_url=event_url,
        event_endpoint_secret=event_secret,
        otel_endpoint=_otel(env),
        trace_url_template=_trace_url_template(env),
    )
    if settings.db_pool_min > settings.db_pool_max:
        raise SettingsError("H2S_DB_POOL_MIN must not exceed H2S_DB_POOL_MAX")
    return settings
