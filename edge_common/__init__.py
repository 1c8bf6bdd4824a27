"""Small pieces every package of the toolkit shares: errors, atomic files and JSON, and the
command-line plumbing (options generated from config dataclasses, one-line errors, logging).

It imports nothing heavy and nothing from the toolkit's other packages, so the device runtime
(``edge_runtime``) and the tooling (``train``, ``convert``, ``benchmarks``) can all depend on it.
"""
