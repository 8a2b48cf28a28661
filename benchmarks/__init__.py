"""Long-context benchmarks for rlm-local: seeded task generators, baselines and result tables."""
