"""Side-by-side speed benchmarks: taskbert against a plain Hugging Face baseline."""
