"""Sweeps on Ray Tune: many distillations (a grid of settings x seeds, or the search for the smallest student that
still plays as well as its teacher) as Tune trials, on this machine or a cluster; the reports and the Pareto figure.

`grid` parses and checks the grid and the distill settings fixed for every trial; `trial` is one trial (one call of
the `distill` it is given); `tuner` is everything Ray does (placement, retries, early stopping, resume); `search` the
--target bisection; `report` the CSV, table and figure; `run` ties them together. Ray is an optional extra: only
`tuner` imports it.

Named `sweeps`, not `sweep`: importing a subpackage binds it as an attribute of its parent, and `policykd.sweep` is the
library's function. The package builds on the run (`policykd.run`) and is given `distill` by the library API
(`policykd.api`), which it never imports.
"""
