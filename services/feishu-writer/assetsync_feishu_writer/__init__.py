"""assetsync feishu_writer service."""
