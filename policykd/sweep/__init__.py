"""Sweeps on Ray Tune: many distillations (a grid of settings x seeds, or the search for the smallest student that
still plays as well as its teacher) as Tune trials, on this machine or a cluster; the reports and the Pareto figure.

`grid` parses and checks --grid; `trial` is one trial (one library call); `tuner` is everything Ray does
(placement, retries, early stopping, resume); `search` the --target bisection; `report` the CSV, table and figure;
`run` ties them together. Ray is an optional extra: only `tuner` imports it.
"""
