"""assetsync sync_gateway service."""
