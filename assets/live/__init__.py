"""The live layer: running quality state from the annotation DB's change stream, in minutes."""
