"""Accelerated ops behind one interface each, with a pure-PyTorch reference that always works."""
