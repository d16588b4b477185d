"""Reports built from run directories (summary.json / metrics.jsonl only)."""
