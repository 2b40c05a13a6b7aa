"""Adapters from what real clusters already emit to the pipeline's batches.

Each adapter parses one real format (tested against captures in `../shared/samples/`), counts
what it could not parse instead of failing, and maps hosts and devices to topology names through
an inventory (`producers.inventory`).
"""
