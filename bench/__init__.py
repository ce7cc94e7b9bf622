"""Benchmarks: each module with a `main()` writes bench/results/<name>.json and prints a short table."""
