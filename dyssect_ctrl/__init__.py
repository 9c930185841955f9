"""Dyssect controller: plans and applies core scaling for a Dyssect BESS data plane."""

__version__ = "0.1.0"
