"""Evaluation: control accuracy (an evaluator classifier trained on the same data), diversity, likelihood."""
