"""assetsync store service."""
