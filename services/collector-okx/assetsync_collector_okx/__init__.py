"""collector-okx."""
