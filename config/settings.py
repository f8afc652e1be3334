"""Settings, read from environment variables.

Every variable is documented in the README and in `.env.example`. The defaults are the
embedded mode: SQLite, files on disk, kombu's filesystem broker, console e-mail. Production
sets DATABASE_URL, REDIS_URL, STORAGE_BACKEND=s3 and the secrets.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("RETAKE_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# The embedded default is refused outside DEBUG (config/startup.py).
SECRET_KEY = env_str("SECRET_KEY", "embedded-insecure-key-change-me-in-production-0123456789")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# The address nodes and providers use to call back (webhooks, uploads).
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "allauth",
    "allauth.account",
    "accounts",
    "billing",
    "generation",
    "workers",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "config.middleware.EdgeHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.WorkspaceMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
SITE_ID = 1
# The product's name in e-mails (allauth reads the Site, synced from this and
# PUBLIC_BASE_URL after every migrate: accounts.sites.sync_site).
SITE_NAME = env_str("SITE_NAME", "Retake")

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.workspaces",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'retake.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL, immediate transactions and a busy timeout let the web server and the worker
    # share one SQLite file (the embedded mode).
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth (django-allauth) --------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "studio"
ACCOUNT_LOGOUT_REDIRECT_URL = "home"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if PUBLIC_BASE_URL.startswith("https") else "http"
# Failed sign-ins count per account *and* client IP (accounts/adapter.py), so a stranger
# cannot lock a real user out; every limit counts in the shared cache.
ACCOUNT_ADAPTER = "accounts.adapter.AccountAdapter"
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/300s/key",
    "signup": "20/m/ip,60/h/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "manage_email": "10/m/user",
    "change_password": "5/m/user",
}

EMAIL_URL = env_str("EMAIL_URL", "console://")
if EMAIL_URL.startswith("smtp"):
    from urllib.parse import unquote, urlparse

    _mail = urlparse(EMAIL_URL)
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = _mail.hostname or "localhost"
    EMAIL_PORT = _mail.port or 587
    EMAIL_HOST_USER = unquote(_mail.username or "")
    EMAIL_HOST_PASSWORD = unquote(_mail.password or "")
    EMAIL_USE_TLS = _mail.scheme == "smtp+tls"
    EMAIL_USE_SSL = _mail.scheme == "smtps"
elif EMAIL_URL.startswith("console"):
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
else:
    raise ImproperlyConfigured("EMAIL_URL must be console:// or smtp[+tls|s]://user:pass@host:port")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Retake <noreply@retake.local>")

# How long an invitation link stays valid.
INVITATION_TTL_HOURS = env_int("INVITATION_TTL_HOURS", 72)
# Teams a user may create in any 24 hours (personal workspaces do not count).
TEAMS_PER_USER_PER_DAY = env_int("TEAMS_PER_USER_PER_DAY", 3)

# --- i18n -------------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static files and storage (django-storages) ----------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
STORAGE_BACKEND = env_str("STORAGE_BACKEND", "filesystem")
if STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("S3_BUCKET", "retake"),
            "endpoint_url": env_str("S3_ENDPOINT_URL") or None,
            "access_key": env_str("S3_ACCESS_KEY_ID") or None,
            "secret_key": env_str("S3_SECRET_ACCESS_KEY") or None,
            "region_name": env_str("S3_REGION", "us-east-1"),
            "default_acl": None,
            "querystring_auth": True,
            "querystring_expire": env_int("SIGNED_URL_TTL_SECONDS", 900),
            "file_overwrite": False,
        },
    }
elif STORAGE_BACKEND == "filesystem":
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": MEDIA_URL},
    }
else:
    raise ImproperlyConfigured("STORAGE_BACKEND must be 'filesystem' or 's3'")
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_MANIFEST_STRICT = False
SIGNED_URL_TTL_SECONDS = env_int("SIGNED_URL_TTL_SECONDS", 900)
# Media is never mounted as a folder: files go out through expiring links only. Behind
# nginx, set this to its internal location (platform/nginx/retake.conf: /_media/) and
# nginx streams the files (and byte ranges) after Django has checked the link.
MEDIA_ACCEL_REDIRECT = env_str("MEDIA_ACCEL_REDIRECT", "")
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 10 * 1024 * 1024)

# --- Cache and rate limits ---------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
# Rate limits and allauth's counters live in the cache, so every process shares them: Redis
# (django-redis) whenever REDIS_URL is set; local memory only in the embedded mode.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": env_str("CACHE_URL") or REDIS_URL,
            "KEY_PREFIX": "retake-cache",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 3, "SOCKET_TIMEOUT": 3},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Take submissions per user and per workspace: a burst and a sustained rate ("count/period",
# period s, m, h, d or e.g. 300s). Over either, the answer is 429 with Retry-After.
RATE_LIMIT_SUBMIT_BURST = env_str("RATE_LIMIT_SUBMIT_BURST", "20/m")
RATE_LIMIT_SUBMIT_SUSTAINED = env_str("RATE_LIMIT_SUBMIT_SUSTAINED", "300/h")
# Invitations sent, per user and per client IP.
RATE_LIMIT_INVITE = env_str("RATE_LIMIT_INVITE", "20/h")

# --- Celery -----------------------------------------------------------------------------
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
# The longest hard time limit of any task; the broker's visibility timeout must exceed it,
# or Redis would hand a still-running task to a second worker.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 4 * CELERY_TASK_TIME_LIMIT)
if CELERY_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_VISIBILITY_TIMEOUT must exceed CELERY_TASK_TIME_LIMIT")
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_QUEUES_ALL = ["dispatch", "media", "billing", "default"]
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- GPU nodes ----------------------------------------------------------------------------
# Port of the reference node that `runstack` starts (the Cog server on the CPU predictor).
REFERENCE_NODE_PORT = env_int("REFERENCE_NODE_PORT", 5001)

# --- Tenancy ----------------------------------------------------------------------------
# Raise on unscoped queries of tenant-owned models from request code (fail closed).
TENANCY_STRICT = env_bool("TENANCY_STRICT", True)

# --- Billing ----------------------------------------------------------------------------
# Calendar months (spending caps) and days (daily free credits) are counted in the active
# pricing schedule's time zone; this one applies while no schedule is active.
BILLING_TIME_ZONE = env_str("BILLING_TIME_ZONE", "Asia/Shanghai")
# The plan of workspaces without a live subscription.
BILLING_FREE_PLAN_SLUG = env_str("BILLING_FREE_PLAN_SLUG", "free")
# ledger_audit reports a hold still pending after this many hours as orphaned.
BILLING_HOLD_ORPHAN_HOURS = env_int("BILLING_HOLD_ORPHAN_HOURS", 72)

# --- Stripe -----------------------------------------------------------------------------
# Secret API key (sk_live_… / sk_test_…); empty disables checkout and the portal.
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY", "")
# The webhook endpoint's signing secret (whsec_…); events with a bad signature get 400.
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET", "")
# Where the stripe library sends API calls; tests point it at a local fake server.
STRIPE_API_BASE = env_str("STRIPE_API_BASE", "https://api.stripe.com").rstrip("/")
# Checkout payment methods per currency (the Stripe account must have them enabled).
STRIPE_PAYMENT_METHODS = {
    "CNY": env_list("STRIPE_PAYMENT_METHODS_CNY", "card,alipay,wechat_pay"),
    "USD": env_list("STRIPE_PAYMENT_METHODS_USD", "card"),
}
# A failed webhook event is retried with backoff up to this many attempts in all.
STRIPE_EVENT_MAX_ATTEMPTS = env_int("STRIPE_EVENT_MAX_ATTEMPTS", 5)
# Days a subscription may stay past due before the workspace goes back to Free.
PAST_DUE_GRACE_DAYS = env_int("PAST_DUE_GRACE_DAYS", 7)

# --- Security (production values make `check --deploy` clean) --------------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Cookies are Secure whenever DEBUG is off (SECURE_COOKIES=0 turns that off explicitly).
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY") else None
# Behind the proxy, the client's address is the last X-Forwarded-For entry (allauth's
# limits and ours key on it).
ALLAUTH_TRUSTED_PROXY_COUNT = 1 if env_bool("BEHIND_PROXY") else 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): scripts and styles only from our own static files,
# no inline ones anywhere (tests/test_csp.py keeps templates clean). Media may also come
# from the S3 endpoint, whose presigned URLs the pages embed.
_MEDIA_ORIGINS = []
if STORAGE_BACKEND == "s3":
    from urllib.parse import urlsplit as _urlsplit

    _endpoint = env_str("S3_ENDPOINT_URL")
    _MEDIA_ORIGINS = (
        [f"{_urlsplit(_endpoint).scheme}://{_urlsplit(_endpoint).netloc}"]
        if _endpoint
        else ["https://*.amazonaws.com"]
    )
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:", *_MEDIA_ORIGINS],
        "media-src": ["'self'", "blob:", *_MEDIA_ORIGINS],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # One validation layer (config/validation.py): strict JSON, one error shape.
    "DEFAULT_PARSER_CLASSES": [
        "config.validation.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "config.validation.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Retake API",
    "DESCRIPTION": (
        "Generate video on every model Retake runs, paid from the workspace's credits. "
        "Authenticate with `Authorization: Bearer <API key>`. See docs/api.md."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/(api/)?v1",
    "PREPROCESSING_HOOKS": ["api.schema.public_paths"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "EventTypeEnum": "api.models.EventType",
        "VideoObjectEnum": ["video"],
        "ListObjectEnum": ["list"],
        "ModelObjectEnum": ["model"],
        "VideoDeletedObjectEnum": ["video.deleted"],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Generation and dispatch ------------------------------------------------------------
# Off-peak takes not started by this many hours after submission expire (hold released).
OFF_PEAK_DEADLINE_HOURS = env_int("OFF_PEAK_DEADLINE_HOURS", 48)
# A take is sent to at most this many nodes before it fails (hold released).
TAKE_MAX_ATTEMPTS = env_int("TAKE_MAX_ATTEMPTS", 3)
# How long a take may sit in dispatching/running/finalizing without news before the
# sweeper re-drives it (re-sends the PUT, or re-runs settlement).
TAKE_LEASE_SECONDS = env_int("TAKE_LEASE_SECONDS", 120)
# How often beat runs the dispatcher and the sweepers.
DISPATCH_INTERVAL_SECONDS = float(env_int("DISPATCH_INTERVAL_MS", 3000)) / 1000
SWEEP_INTERVAL_SECONDS = float(env_int("SWEEP_INTERVAL_MS", 5000)) / 1000
# A node is marked down after this many failed health checks in a row.
NODE_DOWN_AFTER_FAILURES = env_int("NODE_DOWN_AFTER_FAILURES", 3)
NODE_TIMEOUT_SECONDS = env_int("NODE_TIMEOUT_SECONDS", 10)
# The reference node the demo data points at (make run starts it).
REFERENCE_NODE_PORT = env_int("REFERENCE_NODE_PORT", 5001)
REFERENCE_NODE_TOKEN = env_str("REFERENCE_NODE_TOKEN", "reference-node-token")
# Reference images: accepted formats, bytes and pixels (larger ones are refused).
REFERENCE_IMAGE_FORMATS = env_list("REFERENCE_IMAGE_FORMATS", "PNG,JPEG,WEBP")
REFERENCE_IMAGE_MAX_BYTES = env_int("REFERENCE_IMAGE_MAX_BYTES", 10 * 1024 * 1024)
REFERENCE_IMAGE_MAX_PIXELS = env_int("REFERENCE_IMAGE_MAX_PIXELS", 4096 * 4096)
# Moderation: a dotted path to a callable(prompt, negative_prompt, workspace) -> reason | None.
MODERATION_HOOK = env_str("MODERATION_HOOK", "generation.moderation.blocklist")
MODERATION_BLOCKLIST = env_list("MODERATION_BLOCKLIST", "")
# The largest output file a node may upload to /ingest/.
INGEST_MAX_BYTES = env_int("INGEST_MAX_BYTES", 2 * 1024 * 1024 * 1024)

# --- Upstream providers -----------------------------------------------------------------
# Fernet key that encrypts provider credentials stored in the database; empty derives one
# from SECRET_KEY (then rotating SECRET_KEY means entering stored credentials again).
PROVIDER_CREDENTIALS_KEY = env_str("PROVIDER_CREDENTIALS_KEY", "")
# Seconds an upstream API may take to answer one request before it counts as transient.
PROVIDER_TIMEOUT_SECONDS = env_int("PROVIDER_TIMEOUT_SECONDS", 20)
# Provider takes are polled this often when no webhook has arrived (Runway has none).
PROVIDER_POLL_SECONDS = env_int("PROVIDER_POLL_SECONDS", 15)
# A provider job still unfinished after this long is cancelled there and the take moves on.
PROVIDER_MAX_RUNTIME_SECONDS = env_int("PROVIDER_MAX_RUNTIME_SECONDS", 1800)
# Replicate webhooks older or newer than this are refused (replay protection).
PROVIDER_WEBHOOK_TOLERANCE_SECONDS = env_int("PROVIDER_WEBHOOK_TOLERANCE_SECONDS", 300)
# The largest output file copied from a provider into storage.
PROVIDER_OUTPUT_MAX_BYTES = env_int("PROVIDER_OUTPUT_MAX_BYTES", 2 * 1024 * 1024 * 1024)

# --- Public API (api/) ------------------------------------------------------------------
# Requests per API key: a short burst and a sustained rate ("N/s", "N/min", "N/hour").
API_RATE_BURST = env_str("API_RATE_BURST", "20/s")
API_RATE_SUSTAINED = env_str("API_RATE_SUSTAINED", "1000/hour")
# How long the first response to an Idempotency-Key is kept for replay (then purged hourly).
API_IDEMPOTENCY_RETENTION_HOURS = env_int("API_IDEMPOTENCY_RETENTION_HOURS", 24)
# Customer webhooks: per-request timeout, the retry delays (seconds, one per retry; about
# a day in all), how long an endpoint may fail before it is disabled, and whether
# http:// and loopback addresses are allowed (local development and tests only).
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10)
_RETRY_DEFAULT = "5,30,120,600,1800,3600,7200,14400,36000,36000"
WEBHOOK_RETRY_DELAYS = [int(s) for s in env_list("WEBHOOK_RETRY_DELAYS", _RETRY_DEFAULT)]
WEBHOOK_DISABLE_AFTER_HOURS = env_int("WEBHOOK_DISABLE_AFTER_HOURS", 72)
WEBHOOK_ALLOW_LOOPBACK = env_bool("WEBHOOK_ALLOW_LOOPBACK", False)
# The longest a provider's output may take to download (a slow trickle is cut off).
PROVIDER_OUTPUT_MAX_SECONDS = env_int("PROVIDER_OUTPUT_MAX_SECONDS", 600)
# Hosts (`host` or `host:port`) provider outputs may be fetched from over http or at a
# private address; everything else must be https on a public address (workers/outbound.py).
OUTBOUND_TRUSTED_HOSTS = env_list("OUTBOUND_TRUSTED_HOSTS", "")
