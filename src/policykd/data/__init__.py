"""Where labelled steps live: the distillation buffer (Atari frames stored once), Minari datasets,
and recording them from a teacher or a person."""
