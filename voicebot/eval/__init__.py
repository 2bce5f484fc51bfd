"""Evaluation suites: manifests in, JSON + Markdown reports out (see docs/eval.md)."""
