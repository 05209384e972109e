"""RollingQ training core: config, rotation maths, model, training loop."""
