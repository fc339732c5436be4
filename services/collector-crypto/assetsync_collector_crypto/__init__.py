"""assetsync collector_crypto service."""
