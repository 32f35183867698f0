"""Workflows over the distillation run: several runs composed (multi-stage distillation, prune cycles); each takes a
`distill` callable instead of importing the API."""
