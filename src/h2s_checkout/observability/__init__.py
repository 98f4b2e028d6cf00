"""What the service tells its operators, from every layer: structured log lines (logging.py,
written together by log_lines.py) and Prometheus metrics (metrics.py). It imports nothing
else of the service, so that any layer may use it."""
