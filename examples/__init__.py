"""Example custom agents and content filter rules (importable as `examples.<module>:<Class>` from the repository root)."""
