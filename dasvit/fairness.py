"""Operation-fairness regulariser: stops the parameter-free ``skip`` from taking over the mixture (DARTS collapse).

For edge e with mixing weights p_e = softmax(alpha_e) over its active ops, let F_e be the number of op families
(none, skip, attn, mlp, conv) active on e, so 1 / F_e is skip's fair share. The penalty is the mean squared excess

    R(alpha) = (1 / |E|) * sum_e max(0, p_e[skip] - 1 / F_e) ** 2

over all edges E of all blocks, added to the alpha loss as ``lambda * R(alpha)``. It is zero while skip holds no
more than its fair share, so it leaves a balanced search alone and only pushes back once skip dominates;
``lambda = 0`` switches it off.
"""

from __future__ import annotations

import torch

from dasvit.search_space import masked_softmax


def skip_excess_penalty(alphas: list[torch.Tensor], masks: list[torch.Tensor], families: list[str]) -> torch.Tensor:
    """R(alpha) above; ``families[k]`` is the family of op column k."""
    if "skip" not in families:
        return alphas[0].new_zeros(())
    skip = families.index("skip")
    family_names = sorted(set(families))
    terms = []
    for alpha, mask in zip(alphas, masks):
        probs = masked_softmax(alpha, mask)
        families_present = sum(
            mask[:, [k for k, f in enumerate(families) if f == name]].any(dim=1).long() for name in family_names
        )
        fair_share = 1.0 / families_present.clamp(min=1)
        terms.append(torch.relu(probs[:, skip] - fair_share).pow(2))
    return torch.cat(terms).mean()
