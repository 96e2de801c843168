"""Fixtures shared by the whole suite live in tests/harness/; they are registered here."""

pytest_plugins = ["tests.harness.egi_hub"]
