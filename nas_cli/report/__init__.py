"""Reports over runs (``nas_cli.report.objectives``: the objective comparison on the testbed)."""
