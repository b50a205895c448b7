"""Subnet search. So far: Pareto utilities (`nas.search.pareto`); the algorithms are issue 6."""
