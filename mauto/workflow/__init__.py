"""The workflow language: loading, schema, model, expressions, durations."""
