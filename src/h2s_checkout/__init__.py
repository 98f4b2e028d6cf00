"""h2s-checkout: order, dispatch job and Stripe Checkout Session, created exactly once."""

__version__ = "0.1.0"
