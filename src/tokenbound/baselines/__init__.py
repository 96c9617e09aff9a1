"""Baselines bounded with the same machinery as the GPTs (METHOD 4, last bullet).

`tokenbound.baselines.markov`: k-th order Markov chains fitted by counting, their counts coded
with an exact (written and decoded) message length.
"""
