"""Names shared by the emulator's webhooks and its command line (cheap to import)."""

WEBHOOK_URL_ENV = "H2S_EMULATOR_WEBHOOK_URL"
WEBHOOK_SECRET_ENV = "STRIPE_WEBHOOK_SECRET"  # noqa: S105 - a variable name
ADMIN_TOKEN_ENV = "H2S_EMULATOR_ADMIN_TOKEN"  # noqa: S105 - a variable name

COMPLETED = "checkout.session.completed"
EXPIRED = "checkout.session.expired"
ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
ASYNC_FAILED = "checkout.session.async_payment_failed"
SESSION_EVENT_TYPES = (COMPLETED, EXPIRED, ASYNC_SUCCEEDED, ASYNC_FAILED)

REFUND_CREATED = "refund.created"
REFUND_UPDATED = "refund.updated"
REFUND_FAILED = "refund.failed"
CHARGE_REFUNDED = "charge.refunded"
REFUND_EVENT_TYPES = (REFUND_CREATED, REFUND_UPDATED, REFUND_FAILED, CHARGE_REFUNDED)

PAYMENT_INTENT_CAPTURABLE = "payment_intent.amount_capturable_updated"
PAYMENT_INTENT_SUCCEEDED = "payment_intent.succeeded"
PAYMENT_INTENT_CANCELED = "payment_intent.canceled"
CHARGE_CAPTURED = "charge.captured"
PAYMENT_INTENT_EVENT_TYPES = (
    PAYMENT_INTENT_CAPTURABLE,
    PAYMENT_INTENT_SUCCEEDED,
    PAYMENT_INTENT_CANCELED,
    CHARGE_CAPTURED,
)
