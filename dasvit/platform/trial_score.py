"""A search trial's objective: what Optuna maximises, what ASHA's rungs compare and what picks the genotypes to
retrain.

With ``params`` (the default) the objective is the parameter count of the genotype the trial would hand back, every
epoch: over the genotypes of ``experiments/results/objective.md`` it predicts the retrained validation accuracy
better than any proxy retraining measured, at no cost. With ``proxy`` the trial scores, at the end of every search
stage, the genotype it would hand back at that point (``dasvit.objective.proxy_score``) and carries that score
until the next stage ends: ASHA's rungs fall on stage ends in the default schedule, and a trial stopped at a rung
is judged on the genotype it hands back, scored the same way as a finished trial's, so the two compare fairly.
Before the first stage ends there is no score (NaN). With ``supernet`` the objective is the supernet's search-val
accuracy of each epoch. A ``max_macs`` budget applies to each (``dasvit.objective.within_budget``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from dasvit.data import ImageData
from dasvit.epoch_record import EpochRecord
from dasvit.objective import proxy_score, within_budget
from dasvit.search import SearchRun


@dataclass
class TrialScore:
    objective: float = math.nan
    proxy_val_acc: float = math.nan
    scored_stage: int = -1  # the stage whose genotype ``objective`` scored

    def update(self, search: SearchRun, record: EpochRecord, params: int, macs: int, objective: str,
               proxy_epochs: int, max_macs: int | None, data: ImageData, precision: str = "fp32") -> bool:
        """Score the epoch that just ended; True when a new genotype was scored by the proxy."""
        if objective in ("params", "supernet"):
            score = params if objective == "params" else record.val_acc
            self.objective = within_budget(score, macs, max_macs)
            return False
        if not search.closes_stage(record):
            return False
        config = search.config
        proxy = proxy_score(search.genotype(), data, config.data, split_seed=config.seed, epochs=proxy_epochs,
                            seed=config.seed, device=search.device, precision=precision)
        self.proxy_val_acc, self.scored_stage = proxy.val_acc, record.stage
        self.objective = within_budget(proxy.val_acc, macs, max_macs)
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialScore:
        return cls(**data)
