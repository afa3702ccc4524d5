"""Closing the loop: per-task decisions (done, another judgment, an expert) from posteriors.

`policy` decides; `posterior` gives each judgment kind a confidence function the policy reads;
`replay` replays recorded judgments as if they were arriving, through the same policy. The
engine never imports dagster.
"""
