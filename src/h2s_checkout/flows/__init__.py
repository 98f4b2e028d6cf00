"""Use cases: begin, settle, cancel, refund, clean up and reconcile checkouts, deliver order
events, manage API keys and sign-in, and read a checkout for people on call."""
