"""Settings: every knob declared once, read from the environment in one place."""
from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
from dataclasses import dataclass, field
from urllib.parse import urlparse


class ConfigError(Exception):
    """Configuration that cannot work; start-up stops with this one-line message."""


ADMIN_TOKEN_MIN = 32  # characters; a guessable admin token is every user's balance


def _setting(default, help: str, *, env: str | None = None):
    return field(default=default, metadata={"help": help, "env": env})


@dataclass(frozen=True)
class Settings:
    """Gateway configuration. `Settings.from_env()` is the only reader of os.environ."""

    port: int = _setting(8000, "HTTP port to listen on.")
    host: str = _setting("0.0.0.0", "Address to bind.")
    mongodb_uri: str = _setting("memory://", "`memory://` (or unset): embedded in-process store, "
                                "not persisted. `mongodb://…`: a real MongoDB.")
    mongodb_db: str = _setting("cheaplm", "Database name.")
    upstream_base_url: str = _setting("https://api.anthropic.com", "Anthropic-compatible upstream "
                                      "(seeds the default upstream record on first start).")
    upstream_api_key: str = _setting("", "Key sent upstream as x-api-key.")
    cookie_secret: str = _setting("", "Secret that signs session cookies. Required unless the "
                                  "store is memory://, where a random one is generated.")
    admin_username: str = _setting("", "Create this admin user at start if absent.")
    admin_password: str = _setting("", "Password for ADMIN_USERNAME.")
    admin_api_token: str = _setting("", "Bearer token for /admin/api/… (32+ characters); empty "
                                    "disables that API.")
    public_base_url: str = _setting("", "Base URL shown in docs snippets; default: from the request.")
    trusted_proxies: str = _setting("", "Comma-separated CIDRs of reverse proxies whose X-Forwarded-For "
                                    "/ X-Forwarded-Proto are believed; empty: no one's.")
    signup_credits: float = _setting(0.0, "Credits granted to each new self-signed-up user.")
    upstream_timeout: float = _setting(600.0, "Seconds a non-streamed upstream call may take in total "
                                       "(SDKs wait 600 s); streams are bounded by the idle timeout.")
    upstream_idle_timeout: float = _setting(300.0, "Seconds of upstream silence (no bytes) before "
                                            "the call is treated as failed.")
    upstream_connect_timeout: float = _setting(10.0, "Seconds to connect to the upstream.")
    upstream_max_connections: int = _setting(1000, "Most simultaneous connections to one upstream host.")
    upstream_keepalive_expiry: float = _setting(60.0, "Seconds an idle upstream connection is kept.")
    keepalive_interval: float = _setting(15.0, "Seconds of stream silence before the gateway "
                                         "sends a keep-alive (ping event / SSE comment).")
    max_body_mb: float = _setting(32.0, "Largest request body accepted, in MB (413 above).")
    max_bodies_mb: float = _setting(256.0, "Most memory, in MB, that request bodies being received may "
                                    "take together in one process (503 with retry-after above).")
    count_tokens_cache_seconds: float = _setting(5.0, "Seconds an identical count_tokens request is "
                                                 "answered from memory instead of the upstream (0: never).")
    unbounded_input_tokens: int = _setting(200_000, "Input tokens added to the credit hold of a request "
                                           "whose input its body cannot bound (image/document by URL "
                                           "or file, server tools, long-context betas).")
    body_timeout: float = _setting(120.0, "Seconds a client may take to send a request's body "
                                   "(the connection is closed after); responses and streams are unaffected.")
    rate_limit_rpm: int = _setting(0, "Default requests per minute per API key (0 = unlimited); "
                                   "a key's own `rpm` limit overrides it.")
    key_cache_seconds: float = _setting(1.0, "How long a key lookup is cached in-process; a freeze "
                                        "made in another process takes effect within this time.")
    hold_stale_seconds: float = _setting(3600.0, "Holds older than this are released at start-up "
                                         "(their request crashed). memory:// releases all.")
    catalog_refresh_seconds: float = _setting(5.0, "Seconds between reloads of models and upstreams "
                                              "from the database (edits made elsewhere apply within it).")
    upstream_key_secret: str = _setting("", "Secret from which the key that encrypts upstream API keys "
                                        "at rest is derived; default: COOKIE_SECRET.")
    upstream_max_attempts: int = _setting(3, "Most upstreams one request tries (failover on a connection "
                                          "error, 429, 5xx or 529 before the answer starts).")
    upstream_breaker_failures: int = _setting(5, "Failures within UPSTREAM_BREAKER_WINDOW that open an "
                                              "upstream's circuit breaker (per process).")
    upstream_breaker_window: float = _setting(30.0, "Seconds over which an upstream's failures are counted.")
    upstream_breaker_cooldown: float = _setting(30.0, "Seconds an open breaker skips its upstream before "
                                                "one trial request (half-open).")
    usage_retention_days: int = _setting(90, "Days raw usage records are kept (a TTL index deletes older "
                                         "ones; daily rollups are kept for good). 0 keeps them for good.")
    login_max_per_account_address: int = _setting(5, "Failed log-ins for one account from one address "
                                                  "per throttle window.")
    login_max_per_account: int = _setting(100, "Failed log-ins for one account from all addresses per "
                                          "throttle window (loose: guesses from a few addresses cannot "
                                          "lock the owner out).")
    login_max_per_ip: int = _setting(20, "Failed log-ins from one address per throttle window.")
    signup_max_per_ip: int = _setting(10, "Accounts created from one address per throttle window.")
    login_window_seconds: int = _setting(900, "Length of the log-in / sign-up throttle window, in seconds.")
    header_timeout: float = _setting(60.0, "Seconds a client may take to send a request's headers "
                                     "(also how long an idle keep-alive connection stays open).")
    shutdown_grace_seconds: float = _setting(30.0, "On SIGTERM, seconds the streams in flight may take to "
                                             "finish; those still open then end with an in-band error "
                                             "event, billed for what they delivered.")
    instance_lease_seconds: float = _setting(30.0, "Each process's lease in the database, renewed every "
                                             "third of it; the holds of a process whose lease ran out "
                                             "are released by the others.")
    database_timeout_seconds: float = _setting(2.0, "Seconds to find a reachable database before a request "
                                               "fails with 503 (and the driver's connect timeout).")
    metrics_token: str = _setting("", "Bearer token for GET /metrics (16+ characters); empty: /metrics "
                                  "answers 404.")
    processes: int = _setting(1, "Gateway processes on this host sharing the port (`--processes N` "
                              "overrides); above 1 needs a real MongoDB.")
    log_level: str = _setting("INFO", "Python logging level.")
    debug: bool = _setting(False, "Tornado debug mode (autoreload, tracebacks). Never in production.")

    @property
    def embedded(self) -> bool:
        return self.mongodb_uri.startswith("memory://")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    @property
    def max_bodies_bytes(self) -> int:
        return int(self.max_bodies_mb * 1024 * 1024)

    @functools.cached_property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """TRUSTED_PROXIES parsed; raises ConfigError for an entry that is not an address or CIDR."""
        networks = []
        for entry in filter(None, (part.strip() for part in self.trusted_proxies.split(","))):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ConfigError(f"TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR") from None
        return tuple(networks)

    @classmethod
    def fields(cls) -> list[dataclasses.Field]:
        return list(dataclasses.fields(cls))

    @classmethod
    def env_name(cls, f: dataclasses.Field) -> str:
        return f.metadata.get("env") or f.name.upper()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        """Build settings from environment variables (NAME = field name upper-cased).

        Raises ConfigError with a one-line explanation for values that cannot work.
        """
        environ = os.environ if environ is None else environ
        values: dict = {}
        for f in cls.fields():
            raw = environ.get(cls.env_name(f))
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f, raw)
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise ConfigError if this configuration cannot start."""
        if not self.mongodb_uri.startswith(("memory://", "mongodb://", "mongodb+srv://")):
            raise ConfigError(f"MONGODB_URI must be memory:// or mongodb://…, got {self.mongodb_uri!r}")
        if not self.embedded:
            parsed = urlparse(self.mongodb_uri)
            if not parsed.hostname:
                raise ConfigError(f"MONGODB_URI has no host: {self.mongodb_uri!r}")
            if len(self.cookie_secret) < 16:
                raise ConfigError("COOKIE_SECRET (16+ characters) is required with a real MongoDB")
        up = urlparse(self.upstream_base_url)
        if up.scheme not in ("http", "https") or not up.hostname:
            raise ConfigError(f"UPSTREAM_BASE_URL must be an http(s) URL, got {self.upstream_base_url!r}")
        if self.admin_api_token and len(self.admin_api_token) < ADMIN_TOKEN_MIN:
            raise ConfigError(f"ADMIN_API_TOKEN must be at least {ADMIN_TOKEN_MIN} characters (generate one: "
                              f"python3 -c \"import secrets; print(secrets.token_urlsafe(32))\")")
        self.trusted_networks  # raises ConfigError for a bad entry
        if bool(self.admin_username) != bool(self.admin_password):
            raise ConfigError("ADMIN_USERNAME and ADMIN_PASSWORD must be set together")
        if self.metrics_token and len(self.metrics_token) < 16:
            raise ConfigError("METRICS_TOKEN must be at least 16 characters")
        if self.instance_lease_seconds <= 0 or self.database_timeout_seconds <= 0:
            raise ConfigError("INSTANCE_LEASE_SECONDS and DATABASE_TIMEOUT_SECONDS must be positive")
        if self.processes < 1:
            raise ConfigError(f"PROCESSES must be at least 1, got {self.processes}")
        if self.processes > 1 and self.embedded:
            raise ConfigError("several processes need a shared database: set MONGODB_URI=mongodb://… "
                              "(memory:// lives inside one process)")
        if not 0 < self.port < 65536:
            raise ConfigError(f"PORT out of range: {self.port}")


def _parse(f: dataclasses.Field, raw: str):
    name = Settings.env_name(f)
    kind = type(f.default)
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
