"""Pictures of finished runs, drawn from their folders alone: curves.png (plots), comparison figures (compare),
rl.png (rl_plot). What a run prints while it works is `policykd.run.console`; what its folder holds,
`policykd.run.folder`."""
