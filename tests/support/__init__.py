"""Test scaffolding shared by tests/ and benchmarks/: sample results, a headless browser."""
