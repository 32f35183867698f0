"""One distillation run: build it from settings, plan its phases, collect, train, evaluate,
checkpoint; the loop that ties these together."""
