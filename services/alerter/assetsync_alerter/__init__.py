"""assetsync alerter service."""
