"""Pure domain code: carts, keys, the checkout state machine and domain errors. No I/O."""
