"""Use cases: begin a checkout, clean one up, read its timeline."""
