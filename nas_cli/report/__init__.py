"""Reports built from run directories (summary.json / metrics.jsonl only); ``objectives``: the objective comparison on the testbed."""
