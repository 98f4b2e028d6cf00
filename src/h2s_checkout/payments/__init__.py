"""Payments: the port the flows use and its Stripe adapter over the official SDK (the local
emulator is a package of its own, stripe_checkout_emulator)."""
