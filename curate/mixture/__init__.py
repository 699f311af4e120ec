"""Token-weighted mixtures: configuration (`section`), groups of records (`groups`), planning (`plan`),
the validation split (`validation`), sampling and output order (`sample`), all together (`compile`).

Semantics: weights are shares of training tokens. Without groups, source s gets T_s = round(w_s · T)
tokens; with `[mixture.groups.<name>]`, cell (g, s) — source s's records in group g — gets
round(W_g · p_s|g · T), p_s|g being the group's explicit `weights` or p ∝ n^(1/T) (temperature).
Records repeat up to `max_epochs` (per source, or per group in the group's table; the smaller when both,
default 1): whole passes, then a partial pass that stops at the record boundary closest to the target.

Exactness rule (`EXACTNESS_RULE`, also in the manifest): every cell's realized tokens are within half of
its largest record m_c of its target, so a source is within half a record per group it is in (one cell
without groups). Hence each realized token share is within (2E + C) / (T - E) of its target share, with
E = sum of m_c / 2 over the cells, C the number of cells (rounding) and T the total: within 0.1 percentage
points once the records are small next to the mixture (E under about 0.05% of T), else within one record.
Infeasible plans are refused before anything is written, naming the largest feasible total_tokens and
the source (or group) that binds.
"""

from curate.mixture.compile import CompiledMixture, available_tokens, compile_mixture
from curate.mixture.groups import assign_groups, mixture_columns
from curate.mixture.plan import (
    EXACTNESS_RULE,
    CellPlan,
    GroupPlan,
    MixturePlan,
    SourcePlan,
    check_feasible,
    infeasibility,
    plan_mixture,
)
from curate.mixture.sample import instance_order, sample, split_order
from curate.mixture.section import GroupSection, MixtureSection, check_mixture
from curate.mixture.validation import select_validation, validation_target

__all__ = [
    "EXACTNESS_RULE",
    "CellPlan",
    "CompiledMixture",
    "GroupPlan",
    "GroupSection",
    "MixturePlan",
    "MixtureSection",
    "SourcePlan",
    "assign_groups",
    "available_tokens",
    "check_feasible",
    "check_mixture",
    "compile_mixture",
    "infeasibility",
    "instance_order",
    "mixture_columns",
    "plan_mixture",
    "sample",
    "select_validation",
    "split_order",
    "validation_target",
]
