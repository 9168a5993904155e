"""Physically grounded image degradations, one module per physics.

Every function takes a clean 2D slice in physical units (HU for CT, scanner intensity for MR), a
``numpy.random.Generator`` and the physical parameters, and returns a ``Degraded`` that records every
parameter it used, so labels are the parameters themselves and never guessed afterwards.
"""
