"""h2s-checkout, the service: one `POST /api/checkout` makes an order, a technician dispatch
job and a Stripe Checkout Session, exactly once, and records every step. Its layers import
one way only, api -> flows -> store, payments -> domain: `domain/` is pure code (the cart,
ids and keys, the state machine, errors), `store/` is PostgreSQL (one module of SQL per table
family) and `payments/` the Stripe adapter behind its port, `flows/` the use cases, `api/`
the HTTP routes; `observability/` (logs, metrics) serves them all. Above them sit the
settings, the composition root (`bootstrap.py` wires the use cases, `embedded_stack.py`
starts the embedded PostgreSQL and Stripe emulator, `app.py` builds the ASGI app) and the
command line (`cli/`). pyproject.toml's import contracts hold this."""

__version__ = "0.1.0"
