"""Plans, subscriptions, packages, the wallet and its ledger, rate cards and the schedule.

Ledger rows change only through the actions in `billing/ledger.py`; the admin shows them
read-only. Credits are integers everywhere.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.tenancy import WorkspaceOwned

from . import display

RESOLUTION_ORDER = ["480p", "540p", "720p", "1080p"]
RESOLUTION_CHOICES = [(r, r) for r in RESOLUTION_ORDER]


def _validate_prices(value) -> None:
    if not isinstance(value, dict) or not value:
        raise ValidationError(_('Prices are a map of currency to minor units, e.g. {"CNY": 6600}.'))
    for currency, amount in value.items():
        if not (isinstance(currency, str) and len(currency) == 3 and currency.isupper()):
            raise ValidationError(_("%(c)s is not a 3-letter currency code.") % {"c": currency})
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            raise ValidationError(
                _("The %(c)s price must be a whole number of minor units ≥ 0.") % {"c": currency}
            )


# --- Plans, subscriptions, packages ------------------------------------------------------


class Plan(models.Model):
    """A membership tier and its entitlements. Free is a plan too."""

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    monthly_credits = models.PositiveIntegerField(default=0)
    daily_free_credits = models.PositiveIntegerField(default=0)
    max_concurrent_takes = models.PositiveIntegerField(default=1)
    queue_priority = models.IntegerField(
        default=0, help_text=_("Higher is dispatched first; Free is 0.")
    )
    max_resolution = models.CharField(max_length=8, choices=RESOLUTION_CHOICES, default="480p")
    max_duration = models.PositiveIntegerField(default=5, help_text=_("seconds"))
    max_takes_per_batch = models.PositiveIntegerField(default=1)
    watermark = models.BooleanField(default=True)
    off_peak_allowed = models.BooleanField(default=False)
    off_peak_free = models.BooleanField(default=False)
    api_access = models.BooleanField(default=False)
    team_seats = models.PositiveIntegerField(default=1)
    retention_days = models.PositiveIntegerField(default=30)
    prices = models.JSONField(
        default=dict,
        validators=[_validate_prices],
        help_text=_('Monthly price per currency in minor units, e.g. {"CNY": 6600, "USD": 999}.'),
    )
    stripe_price_ids = models.JSONField(
        default=dict, blank=True, help_text=_("Currency → Stripe price id, for checkout.")
    )
    sort_order = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["sort_order", "slug"]

    def __str__(self) -> str:
        return self.name

    @property
    def display_name(self) -> str:
        """The name in the reader's language (the shipped names are translated)."""
        return display.plan_name(self.name)

    def clean(self) -> None:
        if self.off_peak_free and not self.off_peak_allowed:
            raise ValidationError(_("A plan with off-peak free must also allow off-peak."))


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    TRIALING = "trialing", _("Trialing")
    PAST_DUE = "past_due", _("Past due")
    CANCELED = "canceled", _("Canceled")


LIVE_SUBSCRIPTION_STATUSES = [
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.TRIALING,
    SubscriptionStatus.PAST_DUE,
]


class SubscriptionSource(models.TextChoices):
    ADMIN = "admin", _("Admin")
    PAYMENT = "payment", _("Payment")


class Subscription(WorkspaceOwned):
    """A workspace's plan over a billing period.

    `source=payment` subscriptions are advanced by the payment provider's webhooks
    (`external_id` holds its subscription id); `source=admin` ones roll over by beat.
    """

    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="subscriptions"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(
        max_length=16, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE
    )
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    cancel_at_period_end = models.BooleanField(default=False)
    source = models.CharField(
        max_length=16, choices=SubscriptionSource.choices, default=SubscriptionSource.ADMIN
    )
    external_id = models.CharField(max_length=255, blank=True, db_index=True)
    external_customer_id = models.CharField(max_length=255, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    canceled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-current_period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace"],
                condition=Q(status__in=LIVE_SUBSCRIPTION_STATUSES),
                name="subscription_one_live_per_workspace",
            ),
            models.CheckConstraint(
                condition=Q(current_period_end__gt=F("current_period_start")),
                name="subscription_period_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workspace} on {self.plan} ({self.status})"

    def clean(self) -> None:
        if (
            self.current_period_start
            and self.current_period_end
            and self.current_period_end <= self.current_period_start
        ):
            raise ValidationError(_("The period must end after it starts."))


class CreditPackage(models.Model):
    """A one-time purchase of credits, valid for `validity_days` after purchase."""

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    credits = models.PositiveIntegerField()
    prices = models.JSONField(default=dict, validators=[_validate_prices])
    validity_days = models.PositiveIntegerField(default=365)
    stripe_price_ids = models.JSONField(default=dict, blank=True)
    sort_order = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["sort_order", "credits"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gt=0), name="package_credits_positive"),
            models.CheckConstraint(
                condition=Q(validity_days__gt=0), name="package_validity_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits} credits)"

    @property
    def display_name(self) -> str:
        """The name in the reader's language (the shipped names are translated)."""
        return display.package_name(self.name)


# --- Wallet and ledger -------------------------------------------------------------------


class CreditSource(models.TextChoices):
    DAILY_FREE = "daily_free", _("Daily free")
    PLAN_PERIOD = "plan_period", _("Plan period")
    PURCHASE = "purchase", _("Purchase")
    PROMOTION = "promotion", _("Promotion")
    REFUND = "refund", _("Refund")
    ADJUSTMENT = "adjustment", _("Adjustment")


# Lower is consumed first (money rule 4): free and plan credits first, purchases last.
DEFAULT_LOT_PRIORITY = {
    CreditSource.DAILY_FREE: 10,
    CreditSource.PLAN_PERIOD: 20,
    CreditSource.PROMOTION: 30,
    CreditSource.REFUND: 40,
    CreditSource.ADJUSTMENT: 40,
    CreditSource.PURCHASE: 50,
}


class Wallet(WorkspaceOwned):
    """A workspace's credits: `balance` is spendable-or-expiring lot credits, `held` is
    credits pinned by pending holds. Both are caches over the ledger entries."""

    workspace = models.OneToOneField(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="wallet"
    )
    balance = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="wallet_balance_nonnegative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="wallet_held_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"Wallet of {self.workspace} ({self.balance})"


class CreditLot(WorkspaceOwned):
    """Credits granted together, consumed by priority, then earliest expiry, then age."""

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="lots")
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=16, choices=CreditSource.choices)
    amount = models.BigIntegerField()
    remaining = models.BigIntegerField()
    priority = models.IntegerField()
    effective_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["priority", F("expires_at").asc(nulls_last=True), "effective_at", "id"]
        indexes = [
            models.Index(fields=["wallet", "priority"], name="lot_wallet_priority"),
            models.Index(
                fields=["expires_at"],
                condition=Q(expired_at__isnull=True),
                name="lot_expiring",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="lot_amount_positive"),
            models.CheckConstraint(condition=Q(remaining__gte=0), name="lot_remaining_nonnegative"),
            models.CheckConstraint(
                condition=Q(remaining__lte=F("amount")), name="lot_remaining_within_amount"
            ),
            models.CheckConstraint(
                condition=Q(source__in=CreditSource.values), name="lot_source_known"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_source_display()} lot #{self.pk}: {self.remaining}/{self.amount}"


class HoldStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SETTLED = "settled", _("Settled")
    RELEASED = "released", _("Released")


class Hold(WorkspaceOwned):
    """Credits reserved before a take runs: pending, then settled or released. A hold has no
    expiry of its own: the take that owns it ends it (an expired off-peak take releases it),
    and `ledger_audit` reports one left pending past its grace as orphaned."""

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="holds")
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+")
    amount = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=HoldStatus.choices, default=HoldStatus.PENDING)
    charged = models.BigIntegerField(default=0)
    member = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The API key the hold was placed through (its monthly cap counts these holds).
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, unique=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["wallet", "status"], name="hold_wallet_status"),
            models.Index(fields=["member", "created_at"], name="hold_member_month"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(
                condition=Q(charged__gte=0, charged__lte=F("amount")), name="hold_charge_within"
            ),
        ]

    def __str__(self) -> str:
        return f"Hold #{self.pk} {self.amount} ({self.status})"


class HoldAllocation(WorkspaceOwned):
    """The part of one lot a hold pins. `charged + returned == amount` once it closes."""

    workspace_field = "hold__workspace"

    hold = models.ForeignKey(Hold, on_delete=models.PROTECT, related_name="allocations")
    lot = models.ForeignKey(CreditLot, on_delete=models.PROTECT, related_name="allocations")
    amount = models.BigIntegerField()
    charged = models.BigIntegerField(default=0)
    returned = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["hold", "lot"], name="allocation_one_per_lot"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="allocation_amount_positive"),
            models.CheckConstraint(
                condition=Q(charged__gte=0, returned__gte=0)
                & Q(amount__gte=F("charged") + F("returned")),
                name="allocation_within_amount",
            ),
        ]


class EntryKind(models.TextChoices):
    GRANT = "grant", _("Grant")
    HOLD = "hold", _("Hold")
    SETTLE = "settle", _("Settle")
    RELEASE = "release", _("Release")
    EXPIRY = "expiry", _("Expiry")
    ADJUSTMENT = "adjustment", _("Adjustment")
    REVOKE = "revoke", _("Revoked (refund or dispute)")


class AppendOnlyError(RuntimeError):
    """Ledger rows are never edited or deleted; correct with a new entry."""


class LedgerEntry(WorkspaceOwned):
    """One immutable change to a wallet.

    `amount` moves the balance, `held_delta` moves the held credits; a charge is what
    leaves both (a settle entry's `-(amount + held_delta)`).
    """

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    amount = models.BigIntegerField()
    held_delta = models.BigIntegerField(default=0)
    balance_after = models.BigIntegerField()
    lot = models.ForeignKey(
        CreditLot, on_delete=models.PROTECT, null=True, blank=True, related_name="entries"
    )
    hold = models.ForeignKey(
        Hold, on_delete=models.PROTECT, null=True, blank=True, related_name="entries"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True)
    params = models.JSONField(default=dict, blank=True)
    idempotency_key = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "idempotency_key"], name="ledger_entry_unique_key_per_kind"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=EntryKind.values), name="ledger_entry_kind_known"
            ),
            models.CheckConstraint(
                condition=~Q(kind=EntryKind.ADJUSTMENT) | Q(actor__isnull=False) & ~Q(reason=""),
                name="ledger_adjustment_names_actor_and_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d} on wallet #{self.wallet_id}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Ledger entries are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Ledger entries are append-only.")


class Consumption(WorkspaceOwned):
    """Which lot paid for which charge (a settle or a negative adjustment)."""

    workspace_field = "entry__workspace"

    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="consumptions")
    lot = models.ForeignKey(CreditLot, on_delete=models.PROTECT, related_name="consumptions")
    hold = models.ForeignKey(
        Hold, on_delete=models.PROTECT, null=True, blank=True, related_name="consumptions"
    )
    amount = models.BigIntegerField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="consumption_amount_positive"),
        ]


# --- Rate card and pricing schedule ------------------------------------------------------


class RateCard(models.Model):
    """Credits per second of output for one video model, by resolution, plus a draft rate.

    `rates` maps resolution to credits per second, e.g. {"480p": 2, "720p": 4}; the draft
    rate applies at the model's draft resolution.
    """

    video_model = models.OneToOneField(
        "generation.VideoModel", on_delete=models.CASCADE, related_name="rate_card"
    )
    rates = models.JSONField(default=dict, help_text=_('e.g. {"480p": 2, "720p": 4, "1080p": 8}'))
    draft_rate = models.PositiveIntegerField(
        default=1, help_text=_("Credits per second for a draft at the model's draft resolution.")
    )
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["video_model__name"]

    def __str__(self) -> str:
        return f"Rate card for {self.video_model}"

    def clean(self) -> None:
        if not isinstance(self.rates, dict) or not self.rates:
            raise ValidationError({"rates": _("Give at least one resolution's rate.")})
        for resolution, rate in self.rates.items():
            if resolution not in RESOLUTION_ORDER:
                raise ValidationError({"rates": _("Unknown resolution %(r)s.") % {"r": resolution}})
            if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
                raise ValidationError(
                    {"rates": _("The %(r)s rate must be a whole number > 0.") % {"r": resolution}}
                )
        if self.draft_rate is not None and self.draft_rate <= 0:
            raise ValidationError({"draft_rate": _("The draft rate must be > 0.")})


class WindowKind(models.TextChoices):
    PEAK = "peak", _("Peak")
    OFF_PEAK = "off_peak", _("Off-peak")


class PricingSchedule(models.Model):
    """The weekly peak/off-peak windows in one time zone. One schedule is active."""

    name = models.CharField(max_length=80)
    time_zone = models.CharField(max_length=64, default="Asia/Shanghai")
    is_active = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_active", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="schedule_one_active"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValidationError({"time_zone": _("Unknown time zone.")}) from exc


class PricingWindow(models.Model):
    """Days of the week, a start and end time (end ≤ start wraps past midnight), a kind and
    a multiplier. A schedule's windows must cover the week exactly once."""

    schedule = models.ForeignKey(PricingSchedule, on_delete=models.CASCADE, related_name="windows")
    days = models.JSONField(
        default=list, help_text=_("Weekdays the window starts on, 0=Monday … 6=Sunday.")
    )
    start = models.TimeField()
    end = models.TimeField(help_text=_("End ≤ start means the window runs past midnight."))
    kind = models.CharField(max_length=16, choices=WindowKind.choices)
    multiplier = models.DecimalField(max_digits=5, decimal_places=2)

    class Meta:
        ordering = ["start"]
        constraints = [
            models.CheckConstraint(
                condition=Q(multiplier__gte=0), name="window_multiplier_nonnegative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.start:%H:%M}–{self.end:%H:%M} ×{self.multiplier}"


class HolidayOverride(models.Model):
    """A whole local date priced as one window kind and multiplier."""

    schedule = models.ForeignKey(PricingSchedule, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=80, blank=True)
    kind = models.CharField(max_length=16, choices=WindowKind.choices)
    multiplier = models.DecimalField(max_digits=5, decimal_places=2)

    class Meta:
        ordering = ["date"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "date"], name="holiday_one_per_date"),
            models.CheckConstraint(
                condition=Q(multiplier__gte=0), name="holiday_multiplier_nonnegative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.name} ({self.kind} ×{self.multiplier})"


# --- Stripe: customers, the webhook event store, payments and revocations ---------------
# Written by billing/payments.py and billing/webhooks.py; the ledger is still only moved
# through billing/ledger.py (revocations use its locking and entry helpers).


class StripeCustomer(WorkspaceOwned):
    """The one Stripe customer of a workspace, created lazily at the first checkout."""

    workspace = models.OneToOneField(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="stripe_customer"
    )
    customer_id = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.customer_id} ({self.workspace})"


class StripeEventStatus(models.TextChoices):
    RECEIVED = "received", _("Received")
    PROCESSED = "processed", _("Processed")
    IGNORED = "ignored", _("Ignored")
    FAILED = "failed", _("Failed")


class StripeEvent(models.Model):
    """A verified webhook event, stored by its Stripe id before it is handled."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    created = models.DateTimeField(help_text=_("When Stripe created the event."))
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    status = models.CharField(
        max_length=16, choices=StripeEventStatus.choices, default=StripeEventStatus.RECEIVED
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["status", "received_at"], name="stripe_event_status")]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id} ({self.status})"


class StripePaymentKind(models.TextChoices):
    PACKAGE = "package", _("Credit package")
    SUBSCRIPTION = "subscription", _("Subscription invoice")


class StripePayment(WorkspaceOwned):
    """What one paid checkout session or invoice bought: the lot its credits went into.

    Refunds and disputes of the payment take credits back from that lot; `credits_revoked`
    and `credits_shortfall` (already spent, so not taken back) add up what was owed.
    """

    workspace = models.ForeignKey(
        "accounts.Workspace", on_delete=models.CASCADE, related_name="stripe_payments"
    )
    kind = models.CharField(max_length=16, choices=StripePaymentKind.choices)
    reference = models.CharField(
        max_length=255, unique=True, help_text=_("Checkout session id or invoice id.")
    )
    payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    amount = models.PositiveBigIntegerField(help_text=_("Paid, in minor units."))
    currency = models.CharField(max_length=3)
    lot = models.ForeignKey(
        CreditLot, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    credits = models.PositiveBigIntegerField(default=0)
    package = models.ForeignKey(
        CreditPackage, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    plan = models.ForeignKey(
        Plan, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    refunded_amount = models.PositiveBigIntegerField(default=0)
    disputed_amount = models.PositiveBigIntegerField(default=0)
    credits_revoked = models.PositiveBigIntegerField(default=0)
    credits_shortfall = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(credits__gte=F("credits_revoked") + F("credits_shortfall")),
                name="stripe_payment_revocations_within_credits",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.reference}"


class RevocationCause(models.TextChoices):
    REFUND = "refund", _("Refund")
    DISPUTE = "dispute", _("Dispute")


class CreditRevocation(WorkspaceOwned):
    """Credits taken back from a payment's lot after a refund or dispute.

    `taken` left the wallet (with a ledger entry); `shortfall` could not be taken back
    because it was already spent (or is pinned by a running take).
    """

    workspace = models.ForeignKey("accounts.Workspace", on_delete=models.CASCADE, related_name="+")
    payment = models.ForeignKey(StripePayment, on_delete=models.PROTECT, related_name="revocations")
    cause = models.CharField(max_length=16, choices=RevocationCause.choices)
    requested = models.PositiveBigIntegerField()
    taken = models.PositiveBigIntegerField()
    shortfall = models.PositiveBigIntegerField()
    entry = models.ForeignKey(
        LedgerEntry, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    stripe_object_id = models.CharField(max_length=255, help_text=_("Charge or dispute id."))
    idempotency_key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(requested=F("taken") + F("shortfall")),
                name="revocation_taken_plus_shortfall",
            ),
        ]


class SubscriptionDunning(WorkspaceOwned):
    """Past-due bookkeeping of a Stripe subscription: since when, who was told."""

    workspace_field = "subscription__workspace"

    subscription = models.OneToOneField(
        Subscription, on_delete=models.CASCADE, related_name="dunning"
    )
    past_due_since = models.DateTimeField(null=True, blank=True)
    notified_invoice_id = models.CharField(max_length=255, blank=True)
    downgraded_at = models.DateTimeField(null=True, blank=True)
