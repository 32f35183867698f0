"""Robustness: perturbed evaluation (`evaluate --perturb`) and perturbed distillation (`distill --augment`)."""
