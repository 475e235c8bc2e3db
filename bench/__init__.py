"""Benchmarks; their figures go to BENCHMARKS.md with the command that produced them."""
