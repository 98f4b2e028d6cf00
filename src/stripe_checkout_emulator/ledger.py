"""The money behind paid sessions: payment intents, charges and refunds, with refund faults.

Paying a Checkout Session creates a PaymentIntent (the session's
`payment_intent`) and its Charge. A refund is made against either; it takes
what is left on the charge unless given an `amount`, and is refused as Stripe
refuses it (`amount_too_large`, `charge_already_refunded`). A refund is
`succeeded` at once unless a RefundRule says otherwise: then it is created
`pending` and ends `succeeded` or `failed` after a delay on the emulator's
clock, or when `settle_refund` is called.

Events: `refund.created` and `charge.refunded` when made; `refund.updated`
when a pending one ends, followed by `refund.failed` if it failed.

A session created with `payment_intent_data[capture_method]=manual` leaves its intent
`requires_capture`: the amount is held (`amount_capturable`), nothing is captured, until
`capture` takes all or part of it (the rest released) or `cancel` releases it. A hold
lapses at its card's `capture_before` (7 days), or on demand (`lapse`): Stripe cancels the
intent with `cancellation_reason: automatic`. Events: `payment_intent.amount_capturable_updated`
when held, `payment_intent.succeeded` and `charge.captured` when captured,
`payment_intent.canceled` when released or lapsed. Refunds take at most what was captured.

The Ledger is not locked on its own: EmulatorState calls it under its lock.
"""

import fnmatch
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import StripeError, invalid
from .events import (
    CHARGE_CAPTURED,
    CHARGE_REFUNDED,
    PAYMENT_INTENT_CANCELED,
    PAYMENT_INTENT_CAPTURABLE,
    PAYMENT_INTENT_SUCCEEDED,
    REFUND_CREATED,
    REFUND_FAILED,
    REFUND_UPDATED,
)
from .ids import new_id
from .objects import (
    REFUND_FAILURE_REASONS,
    RefundSpec,
    build_payment,
    build_refund,
    format_amount,
    list_object,
    mark_canceled,
    mark_captured,
    mark_payment_outcome,
    mark_refund_outcome,
)
from .statefile import StateFile

# A refund in these states holds its amount; a failed or canceled one gives it back.
_HOLDING = ("pending", "requires_action", "succeeded")

Emit = Callable[[str, dict[str, Any], dict[str, str | None] | None], dict[str, Any]]


@dataclass
class RefundRule:
    """A refund fault: matching refunds are created `pending`, then end as `outcome`
    ("succeeded" or "failed", with `failure_reason`) `delay_s` seconds later on the
    emulator's clock, or, with `delay_s` None, when told (settle_refund).
    `status_withheld`: the create answer's `status` is null, which the SDK's Refund
    type allows (`status: Optional[str]`)."""

    outcome: str = "failed"
    delay_s: float | None = None
    failure_reason: str = "expired_or_canceled_card"
    payment_intent: str = "*"  # fnmatch pattern on the refunded payment intent
    times: int | None = None  # how many refunds it applies to; None: all
    status_withheld: bool = False
    id: str = field(default_factory=lambda: new_id("rff_", 12))
    applied: int = 0

    OUTCOMES = ("succeeded", "failed")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RefundRule":
        unknown = set(data) - {
            "outcome",
            "delay_s",
            "failure_reason",
            "payment_intent",
            "times",
            "status_withheld",
            "id",
        }
        if unknown:
            raise ValueError(f"unknown refund fault fields: {sorted(unknown)}")
        rule = cls(**data)
        if rule.outcome not in cls.OUTCOMES:
            raise ValueError(f"refund fault outcome must be one of {list(cls.OUTCOMES)}")
        if rule.failure_reason not in REFUND_FAILURE_REASONS:
            raise ValueError(f"failure_reason must be one of {list(REFUND_FAILURE_REASONS)}")
        if rule.delay_s is not None:
            rule.delay_s = float(rule.delay_s)
            if rule.delay_s < 0:
                raise ValueError("delay_s >= 0")
        if rule.times is not None and rule.times < 1:
            raise ValueError("times >= 1")
        return rule

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def take(self, payment_intent: str) -> bool:
        if not fnmatch.fnmatchcase(payment_intent, self.payment_intent):
            return False
        if self.times is not None and self.applied >= self.times:
            return False
        self.applied += 1
        return True


@dataclass
class PendingRefund:
    due: float | None  # on the emulator's clock; None: waits for settle_refund
    succeeds: bool
    failure_reason: str


class Ledger:
    def __init__(self, store: StateFile | None, emit: Emit) -> None:
        self._store = store
        self._emit = emit
        self.payment_intents: dict[str, dict[str, Any]] = {}
        self.charges: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, PendingRefund] = {}
        self.rules: list[RefundRule] = []
        if store is not None:
            self.payment_intents = store.object_map("payment_intent")
            self.charges = store.object_map("charge")
            self.refunds = store.object_map("refund")
            self.pending = {
                ident: PendingRefund(**body)
                for ident, body in store.object_map("pending_refund").items()
            }

    def reset(self) -> None:
        for table in (self.payment_intents, self.charges, self.refunds, self.pending):
            table.clear()
        self.rules.clear()

    # -- payments ----------------------------------------------------------------

    def record_payment(
        self,
        session: dict[str, Any],
        created: int,
        *,
        delayed: bool,
        manual: bool = False,
        metadata: dict[str, str] | None = None,
    ) -> None:
        """The intent and charge behind a session that just completed; the intent has the
        session's payment_intent_data[metadata]."""
        intent, charge = build_payment(session, created, delayed=delayed, manual=manual)
        intent["metadata"] = dict(metadata or {})
        self.payment_intents[intent["id"]] = intent
        self.charges[charge["id"]] = charge
        self._save("payment_intent", intent)
        self._save("charge", charge)
        if manual:
            self._emit(PAYMENT_INTENT_CAPTURABLE, intent, None)

    # -- holds (manual capture) --------------------------------------------------

    def capture(
        self,
        payment_intent: str,
        amount: int | None,
        now: int,
        request: dict[str, str | None] | None,
    ) -> dict[str, Any]:
        """Capture `amount` (None: all) of a held payment; the rest of the hold is released."""
        intent = self._intent(payment_intent)
        if intent["status"] != "requires_capture":
            raise _unexpected_state(intent, "capture", "requires_capture")
        capturable = intent["amount_capturable"]
        amount = capturable if amount is None else amount
        if amount > capturable:
            raise StripeError(
                400,
                f"The amount to capture ({format_amount(amount, intent['currency'])}) is greater "
                f"than the amount capturable ({format_amount(capturable, intent['currency'])}).",
                code="amount_too_large",
                param="amount_to_capture",
                stored=True,
            )
        charge = self.charges[intent["latest_charge"]]
        mark_captured(intent, charge, amount)
        self._save("payment_intent", intent)
        self._save("charge", charge)
        self._emit(PAYMENT_INTENT_SUCCEEDED, intent, request)
        self._emit(CHARGE_CAPTURED, self.charge_view(charge), request)
        return intent

    def cancel(
        self,
        payment_intent: str,
        reason: str | None,
        now: int,
        request: dict[str, str | None] | None,
    ) -> dict[str, Any]:
        """Release a held (or not yet paid) payment; a captured one cannot be cancelled."""
        intent = self._intent(payment_intent)
        if intent["status"] in ("succeeded", "canceled", "processing"):
            raise _unexpected_state(
                intent,
                "cancel",
                "requires_payment_method, requires_capture, requires_confirmation, requires_action",
            )
        mark_canceled(intent, reason, now)
        self._save("payment_intent", intent)
        self._emit(PAYMENT_INTENT_CANCELED, intent, request)
        return intent

    def lapse(self, payment_intent: str, now: int) -> dict[str, Any]:
        """A hold the card's issuer let go: cancelled by Stripe with reason `automatic`."""
        intent = self._intent(payment_intent)
        if intent["status"] != "requires_capture":
            raise _unexpected_state(intent, "lapse", "requires_capture")
        return self.cancel(payment_intent, "automatic", now, None)

    def lapsed_holds(self, now: int) -> list[str]:
        """Held payments whose `capture_before` has passed."""
        due = []
        for ident, intent in self.payment_intents.items():
            if intent["status"] != "requires_capture":
                continue
            card = self.charges[intent["latest_charge"]]["payment_method_details"].get("card")
            if card is not None and card.get("capture_before", now + 1) <= now:
                due.append(ident)
        return due

    def _intent(self, payment_intent: str) -> dict[str, Any]:
        intent = self.payment_intents.get(payment_intent)
        if intent is None:
            raise StripeError(
                404,
                f"No such payment_intent: '{payment_intent}'",
                code="resource_missing",
                param="intent",
            )
        return intent

    def settle_payment(self, payment_intent: str | None, succeeded: bool) -> None:
        intent = self.payment_intents.get(payment_intent or "")
        if intent is None:
            return  # a session paid before this emulator kept payments
        charge = self.charges[intent["latest_charge"]]
        mark_payment_outcome(intent, charge, succeeded)
        self._save("payment_intent", intent)
        self._save("charge", charge)

    def charge_view(self, charge: dict[str, Any]) -> dict[str, Any]:
        """The charge as the API shows it: its refunds listed, newest first."""
        refunds = [r for r in reversed(self.refunds.values()) if r["charge"] == charge["id"]]
        view = dict(charge)
        view["refunds"] = list_object(refunds, f"/v1/charges/{charge['id']}/refunds")
        return view

    # -- refunds -----------------------------------------------------------------

    def create_refund(
        self,
        spec: RefundSpec,
        now: int,
        exact_now: float,
        request: dict[str, str | None] | None,
    ) -> dict[str, Any]:
        charge = self._refundable_charge(spec)
        # What was captured (all of it, unless a held payment was captured in part).
        left = charge["amount_captured"] - charge["amount_refunded"]
        if left <= 0:
            raise StripeError(
                400,
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
                stored=True,
            )
        amount = left if spec.amount is None else spec.amount
        if amount > left:
            currency = charge["currency"]
            raise StripeError(
                400,
                f"Refund amount ({format_amount(amount, currency)}) is greater than unrefunded "
                f"amount on charge ({format_amount(left, currency)})",
                code="amount_too_large",
                param="amount",
                stored=True,
            )
        rule = next((r for r in self.rules if r.take(charge["payment_intent"])), None)
        refund = build_refund(spec, charge, amount, now, pending=rule is not None)
        self.refunds[refund["id"]] = refund
        self._save("refund", refund)
        if rule is not None:
            due = None if rule.delay_s is None else exact_now + rule.delay_s
            pending = PendingRefund(due, rule.outcome == "succeeded", rule.failure_reason)
            self.pending[refund["id"]] = pending
            self._save_pending(refund["id"], pending)
        self._recount(charge)
        self._emit(REFUND_CREATED, refund, request)
        self._emit(CHARGE_REFUNDED, self.charge_view(charge), request)
        if rule is not None and rule.status_withheld:
            return {**refund, "status": None}
        return refund

    def settle_refund(
        self, refund_id: str, succeeded: bool, failure_reason: str | None = None
    ) -> dict[str, Any]:
        """End a pending refund now; emits refund.updated (and refund.failed)."""
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise StripeError(404, f"No such refund: '{refund_id}'", code="resource_missing")
        if refund["status"] != "pending":
            raise StripeError(
                400, f"Refund {refund_id} is {refund['status']}; only a pending refund can end."
            )
        planned = self.pending.get(refund_id)
        reason = None
        if not succeeded:
            reason = failure_reason or (planned.failure_reason if planned else "unknown")
            if reason not in REFUND_FAILURE_REASONS:
                raise ValueError(f"failure_reason must be one of {list(REFUND_FAILURE_REASONS)}")
        self.pending.pop(refund_id, None)
        if self._store is not None:
            self._store.delete_object("pending_refund", refund_id)
        mark_refund_outcome(refund, reason)
        self._save("refund", refund)
        self._recount(self.charges[refund["charge"]])
        self._emit(REFUND_UPDATED, refund, None)
        if reason is not None:
            self._emit(REFUND_FAILED, refund, None)
        return refund

    def due_refunds(self, exact_now: float) -> list[tuple[str, PendingRefund]]:
        return [
            (ident, p)
            for ident, p in self.pending.items()
            if p.due is not None and p.due <= exact_now
        ]

    def list_refunds(
        self, payment_intent: str | None = None, charge: str | None = None
    ) -> list[dict[str, Any]]:
        """Refunds, newest first, of one payment intent or charge if given."""
        return [
            r
            for r in reversed(self.refunds.values())
            if payment_intent in (None, r["payment_intent"]) and charge in (None, r["charge"])
        ]

    def _refundable_charge(self, spec: RefundSpec) -> dict[str, Any]:
        charge: dict[str, Any] | None = None
        if spec.charge is not None:
            charge = self.charges.get(spec.charge)
            if charge is None:
                raise _missing("charge", spec.charge)
        if spec.payment_intent is not None:
            intent = self.payment_intents.get(spec.payment_intent)
            if intent is None:
                raise _missing("payment_intent", spec.payment_intent)
            if charge is not None and charge["payment_intent"] != intent["id"]:
                raise invalid(
                    f"The charge {charge['id']} does not belong to the PaymentIntent "
                    f"{intent['id']}.",
                    "charge",
                )
            charge = self.charges[intent["latest_charge"]]
        if charge is None:
            raise invalid(
                "One of the following params should be provided for this request: "
                "payment_intent or charge."
            )
        if charge["status"] != "succeeded" or not charge["captured"]:
            raise StripeError(
                400,
                f"This charge ({charge['id']}) is {charge['status']} and has no money to refund.",
                code="charge_not_refundable",
                stored=True,
            )
        return charge

    def _recount(self, charge: dict[str, Any]) -> None:
        held = sum(
            r["amount"]
            for r in self.refunds.values()
            if r["charge"] == charge["id"] and r["status"] in _HOLDING
        )
        captured = charge["amount_captured"]
        charge.update(amount_refunded=held, refunded=captured > 0 and held >= captured)
        self._save("charge", charge)

    def _save(self, kind: str, obj: dict[str, Any]) -> None:
        if self._store is not None:
            self._store.put_object(kind, obj["id"], obj)

    def _save_pending(self, refund_id: str, pending: PendingRefund) -> None:
        if self._store is not None:
            self._store.put_object("pending_refund", refund_id, asdict(pending))


def _unexpected_state(intent: dict[str, Any], action: str, expected: str) -> StripeError:
    """Stripe's refusal of a capture or cancel in the wrong status, in its words."""
    done = {"capture": "captured", "cancel": "canceled", "lapse": "lapsed"}[action]
    opening = (
        f"This PaymentIntent could not be {done}"
        if action == "capture"
        else f"You cannot {action} this PaymentIntent"
    )
    return StripeError(
        400,
        f"{opening} because it has a status of {intent['status']}. Only a PaymentIntent "
        f"with one of the following statuses may be {done}: {expected}.",
        code="payment_intent_unexpected_state",
        param=None,
        stored=True,
    )


def _missing(kind: str, ident: str) -> StripeError:
    # A missing object named by a parameter is a 400, not the 404 of a missing URL.
    return StripeError(400, f"No such {kind}: '{ident}'", code="resource_missing", param=kind)
