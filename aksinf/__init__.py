"""The `aksinf` command line."""
