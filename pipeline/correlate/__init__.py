"""Symptoms to root causes: the hold, the rules and the blast radius."""
