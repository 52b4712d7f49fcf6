"""Example custom agents (importable as `examples.<module>:<Class>` from the repository root)."""
