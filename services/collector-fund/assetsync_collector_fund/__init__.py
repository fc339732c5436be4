"""assetsync collector_fund service."""
