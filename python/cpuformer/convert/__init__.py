"""Converters from other frameworks' checkpoints to cpuformer's models and file format."""
