"""Students are real SB3 models with small networks: building them (MLP, small CNN), folding input
standardisation into their first layer, and averaging their weights."""
