"""Pulumi mocks fixtures (see tests/pulumi_harness.py)."""
