"""Benchmarks whose figures size the deployment (DESIGN.md, "Scale"); run them as scripts."""
