"""Random identifiers shaped like Stripe's (cs_test_..., req_..., pi_...)."""

import random
import string

_ALPHABET = string.ascii_letters + string.digits
# Ids need uniqueness, not secrecy: a urandom-seeded Mersenne Twister is
# ~10x cheaper than `secrets`, and id generation dominated a create's cost.
_rng = random.Random()


def new_id(prefix: str, length: int = 24) -> str:
    """Return `prefix` followed by `length` random alphanumerics."""
    return prefix + "".join(_rng.choices(_ALPHABET, k=length))


def session_id() -> str:
    # Real test-mode session ids are "cs_test_a1" + 56 characters; keeping the
    # shape lets code that validates or truncates ids behave as with Stripe.
    return new_id("cs_test_a1", 56)


def request_id() -> str:
    return new_id("req_", 14)
