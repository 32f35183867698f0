"""One student, many tasks: multi-task distillation with a shared trunk and per-task input layers and heads, each
task's student a plain SB3 model (`build` the runs, `train` a joint round, `loop` the rounds, `summary` the rows)."""
