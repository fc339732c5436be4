"""Cost basis from fills (CONTRACTS §6): shared with collector-okx, see assetsync.costbasis."""

from __future__ import annotations

from assetsync.costbasis import Basis, CostMethod, ValuedFill, average_basis, avg_cost, fifo_basis

__all__ = ["Basis", "CostMethod", "ValuedFill", "average_basis", "avg_cost", "fifo_basis"]
