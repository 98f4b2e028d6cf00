"""Payments: the port the flows use, the Stripe adapter and the local Stripe emulator."""
