"""Demo models built offline from random weights: a tiny Orpheus-vocabulary Llama and SNAC.

Used by ``python -m app --demo``, the tests and the benchmarks; nothing here is on the
serving path of real models.
"""
