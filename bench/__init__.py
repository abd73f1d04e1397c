"""The project's benchmark: quart_app against a bare Quart route and the Flask original.

Run it with `.venv/bin/python -m bench` (see docs/benchmarks.md).
"""
