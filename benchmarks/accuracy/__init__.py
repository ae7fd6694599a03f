"""Accuracy sweep: methods x built-in tasks x seeds x budgets, scored on whole test splits.

A benchmark harness, not part of the installed package: `benchmarks/train_accuracy.py` imports it
(its folder is on the path when run as a script; tests/benchmarks/conftest.py adds it for the tests).

methods.py (what each method is and how one trains, with a dev curve), scoring.py
(test metrics, per-class recall, decision rules calibrated on dev), sweep.py
(the cells, resumable, and the wall-clock budgets), table.py (mean and spread over
seeds, steps to plateau, Markdown). `benchmarks/train_accuracy.py` is its command line.
"""
