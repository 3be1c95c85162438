"""Benchmarks and slow reference implementations (not part of the product)."""
