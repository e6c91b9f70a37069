"""Benchmarks for Identity Mover (``make bench`` = ``python -m bench``), kept apart from the tests.

A benchmark prints its numbers and writes them to ``bench/results/``; speed is measured here and
never asserted in timed tests. See ``bench/README.md``.
"""
