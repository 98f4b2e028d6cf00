"""What each state of a checkout reads as to its customer, on the success and cancel pages.

Keyed by the machine's own states (``CheckoutMachine``), every one of them: the return pages
are opened by anyone who has the link, at any time after the checkout, so a refunded or
failed order must read as such, not crash the page. A state missing here (one added to the
machine without its words) reads as ``UNKNOWN``, a neutral word, rather than a 500, and
``tests/integration/test_return_pages.py`` fails until it has its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from h2s_checkout.domain.machine import CheckoutMachine


@dataclass(frozen=True, slots=True)
class Shown:
    """How a checkout's state reads to the customer."""

    key: str  # data-status, for styling and tests
    title: str
    label: str
    message: str
    settling: bool = False  # still moving: the page refreshes


_S = CheckoutMachine
# Before the pay link exists (phase 1 written, the session not yet linked): a customer
# rarely sees it, but a retry after a dead attempt can hold a checkout here for a while.
_PREPARING = Shown(
    "waiting",
    "One moment",
    "Being prepared",
    "Your booking is being prepared. This page updates by itself.",
    settling=True,
)
_NOT_COMPLETED = Shown(
    "not_completed",
    "Booking not completed",
    "Not completed",
    "This booking could not be completed, and nothing was charged. To book, return to the "
    "shop and check out again.",
)
_REFUND_DAYS = "It can take 5 to 10 business days to reach your account."

SUCCESS: dict[str, Shown] = {
    _S.pending_payment.id: _PREPARING,
    _S.job_queued.id: _PREPARING,
    _S.session_created.id: Shown(
        "waiting",
        "Almost done",
        "Waiting for confirmation",
        "We are waiting for your payment's confirmation. This page updates by itself.",
        settling=True,
    ),
    _S.paid.id: Shown(
        "paid", "Thank you", "Paid", "Your payment is confirmed and your booking is in."
    ),
    _S.expired.id: Shown(
        "expired", "Payment not completed", "Expired", "This payment expired; nothing was charged."
    ),
    _S.payment_failed.id: Shown(
        "payment_failed",
        "Payment not completed",
        "Payment failed",
        "Your payment did not go through, so nothing was charged. To book, return to the "
        "shop and check out again.",
    ),
    _S.cancelled.id: Shown(
        "cancelled",
        "Booking cancelled",
        "Cancelled",
        "This booking was cancelled; nothing was charged.",
    ),
    _S.refund_pending.id: Shown(
        "refund_pending",
        "Booking cancelled",
        "Refund on its way",
        f"This booking was cancelled and your payment is being refunded. {_REFUND_DAYS}",
    ),
    _S.refunded.id: Shown(
        "refunded",
        "Booking cancelled",
        "Refunded",
        f"This booking was cancelled and your payment was refunded. {_REFUND_DAYS}",
    ),
    # The provider refused the refund (an expired card, say): someone at the shop retries
    # it. The customer is owed the money either way, so the page says so and no more.
    _S.refund_failed.id: Shown(
        "refund_delayed",
        "Booking cancelled",
        "Refund delayed",
        "This booking was cancelled. Your refund has not gone through yet; the shop will "
        "sort it out and contact you.",
    ),
    _S.failed.id: _NOT_COMPLETED,
    _S.cleaned.id: _NOT_COMPLETED,
    # Pay on completion: the card is held at booking and charged once the job is done.
    _S.authorized.id: Shown(
        "authorized",
        "Thank you",
        "Booked",
        "Your booking is in. Your card is authorized, and it is charged only when the job is "
        "done, for the work done.",
    ),
    _S.capture_pending.id: Shown(
        "capture_pending",
        "Job done",
        "Payment being taken",
        "The job is done and your payment is being taken from the authorized amount. This "
        "page updates by itself.",
        settling=True,
    ),
    _S.authorization_expired.id: Shown(
        "authorization_expired",
        "Your booking",
        "Authorization expired",
        "The authorization on your card expired before the job was done, so nothing was "
        "charged. The shop will contact you about paying.",
    ),
    _S.partially_refunded.id: Shown(
        "partially_refunded",
        "Thank you",
        "Partly refunded",
        f"Your booking is paid and part of the payment was refunded. {_REFUND_DAYS}",
    ),
}

# The cancel page is where a customer lands who left the payment page: while the session is
# open, nothing was charged yet; every later state reads as on the success page.
CANCEL: dict[str, Shown] = {
    **SUCCESS,
    _S.session_created.id: Shown(
        "waiting",
        "Payment not completed",
        "Not paid",
        "You left the payment page, and nothing was charged. To book, return to the shop "
        "and check out again.",
    ),
    _S.paid.id: Shown("paid", "Already paid", "Paid", "This order is paid; your booking is in."),
}

UNKNOWN = Shown(
    "unknown",
    "Your booking",
    "See the shop",
    "We cannot show where this booking stands right now. The shop can tell you.",
)


def on_success_page(state: str) -> Shown:
    return SUCCESS.get(state, UNKNOWN)


def on_cancel_page(state: str) -> Shown:
    return CANCEL.get(state, UNKNOWN)
