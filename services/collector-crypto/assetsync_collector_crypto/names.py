"""Display names (资产名称) of common crypto assets, as the seed's 持仓 table shows them (比特币, 狗狗币)."""

from __future__ import annotations

# Binance's spot API has no asset names (only the signed capital/config endpoint, which we skip);
# these are the usual Chinese names. Anything else is shown by its code; `manual.name` overrides.
CRYPTO_NAMES: dict[str, str] = {
    "BTC": "比特币",
    "ETH": "以太坊",
    "BNB": "币安币",
    "USDT": "泰达币",
    "USDC": "USD Coin",
    "FDUSD": "First Digital USD",
    "SOL": "Solana",
    "XRP": "瑞波币",
    "DOGE": "狗狗币",
    "ADA": "艾达币",
    "TRX": "波场",
    "DOT": "波卡",
    "LTC": "莱特币",
    "BCH": "比特币现金",
    "ETC": "以太经典",
    "LINK": "Chainlink",
    "AVAX": "Avalanche",
    "SHIB": "柴犬币",
    "TON": "Toncoin",
    "MATIC": "Polygon",
    "POL": "Polygon",
    "ATOM": "Cosmos",
    "FIL": "Filecoin",
    "UNI": "Uniswap",
    "XLM": "恒星币",
    "EOS": "柚子币",
    "NEAR": "NEAR Protocol",
    "APT": "Aptos",
    "ARB": "Arbitrum",
    "OP": "Optimism",
    "SUI": "Sui",
    "PEPE": "Pepe",
    "ETHW": "以太坊 PoW",
}


def display_name(asset: str, configured: str = "") -> str:
    """The configured name, else the usual one, else the code itself."""
    return configured or CRYPTO_NAMES.get(asset.upper(), asset)
