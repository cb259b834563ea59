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
from dasvit.objective import ScoreInputs, scorer, within_budget
from dasvit.search import SearchRun
from dasvit.vocabulary import objective_spec


@dataclass
class TrialScore:
    objective: float = math.nan
    proxy_val_acc: float = math.nan  # a stage-end objective's score before any MACs budget (the proxy's accuracy)
    scored_stage: int = -1  # the stage whose genotype a stage-end objective scored

    def update(self, search: SearchRun, record: EpochRecord, params: int, macs: int, objective: str,
               proxy_epochs: int, max_macs: int | None, data: ImageData, precision: str = "fp32") -> bool:
        """Score the epoch that just ended with the registered ``objective``; True when a stage-end objective scored
        a new genotype (the trial logs it as the one it hands back)."""
        spec = objective_spec(objective)
        if not spec.every_epoch and not search.closes_stage(record):
            return False
        score = scorer(objective)(ScoreInputs(search, record, params, macs, data, proxy_epochs, precision))
        self.objective = within_budget(score, macs, max_macs)
        if spec.every_epoch:
            return False
        self.proxy_val_acc, self.scored_stage = score, record.stage
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialScore:
        return cls(**data)
