"""Register profiles, one YAML file per panel model."""
