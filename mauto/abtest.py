"""The A/B statistics of `mauto stats`: for each variant of a split against the first (the control), the uplift
with its confidence interval, a fixed-horizon p-value, an always-valid p-value that survives daily peeking, and
the verdict in plain words. Pure functions of counts, standard library only (docs/ab-tests.md has the formulas
and their sources).

- `p_value`: the two-sided two-proportion z-test with the pooled variance (statsmodels `proportions_ztest`, and
  `test_proportions_2indep(method="score", correction=False)`, which is the same test).
- `uplift_low`/`uplift_high`: the interval of the ratio of the two rates on the log scale (Katz; statsmodels
  `confint_proportions_2indep(compare="ratio", method="log")`), minus 1.
- `difference_low`/`difference_high`: Newcombe's hybrid score interval from two Wilson intervals (statsmodels
  `confint_proportions_2indep(compare="diff", method="newcomb")`).
- `always_valid_p`: the running minimum of 1/Λ over the daily path, Λ the normal-mixture likelihood ratio of the
  mSPRT (Johari, Koomen, Pekelis, Walsh, KDD 2017; Johari, Pekelis, Walsh, Operations Research 2022).
- `significant`: the always-valid p-values corrected by Holm's step-down method over the k-1 comparisons.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from statistics import NormalDist

_NORMAL = NormalDist()
# `needed` asks for this chance that the always-valid test declares a true uplift of `uplift_to_detect` at the
# look it names (the usual power of a sample-size calculation).
POWER = 0.80
# The scale of the mSPRT's normal mixture, relative to the pooled rate: τ = MIXING_UPLIFT · p̂, the absolute
# difference of a 30% uplift. The test is most sensitive where that effect becomes detectable; a smaller τ gives
# little power at a few thousand contacts per variant, a larger one loses only slowly (logarithmically) at large
# volumes (docs/ab-tests.md shows the simulations behind the choice).
MIXING_UPLIFT = 0.30
# Beyond this many contacts per arm, `needed` says "not computable" rather than promise a number nobody reaches.
_MOST_CONTACTS = 10**12


@dataclass(frozen=True)
class Arm:
    """One variant of a split: the contacts it received and how many of them converted."""

    name: str
    contacts: int
    conversions: int
    holdout: bool = False

    def __post_init__(self) -> None:
        if self.contacts < 0 or self.conversions < 0 or self.conversions > self.contacts:
            raise ValueError(f"variant {self.name}: {self.conversions} conversions of {self.contacts} contacts")

    @property
    def rate(self) -> float | None:
        """conversions / contacts; None without contacts."""
        return self.conversions / self.contacts if self.contacts else None


@dataclass(frozen=True)
class Day:
    """The cumulative counts per arm at the end of one day, arms in the order of the arms list."""

    contacts: tuple[int, ...]
    conversions: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.contacts) != len(self.conversions) or any(
                contacts < 0 or conversions < 0 or conversions > contacts
                for contacts, conversions in zip(self.contacts, self.conversions, strict=True)):
            raise ValueError(f"day with contacts {self.contacts} and conversions {self.conversions}")


@dataclass(frozen=True)
class Comparison:
    """One variant against the control. Rates and uplifts are fractions (0.28 is +28%); None: not computable."""

    variant: str
    control: str
    variant_rate: float | None
    control_rate: float | None
    uplift: float | None  # variant rate / control rate - 1
    uplift_low: float | None
    uplift_high: float | None
    difference: float | None  # variant rate - control rate
    difference_low: float | None
    difference_high: float | None
    p_value: float | None  # fixed horizon: valid for one look only
    always_valid_p: float | None  # valid at every look, never increases along the path
    always_valid_p_adjusted: float | None  # Holm-adjusted over the k-1 comparisons
    significant: bool  # always_valid_p_adjusted <= alpha
    needed: int | None  # about how many more contacts per variant (the larger of the pair) to detect the uplift

    def to_dict(self) -> dict[str, object]:
        """The keys of a comparison in `mauto stats --format json` (/work/brief/stats-shape.md)."""
        return {"variant": self.variant, "control": self.control,
                "uplift": self.uplift, "uplift_low": self.uplift_low, "uplift_high": self.uplift_high,
                "difference": self.difference, "difference_low": self.difference_low,
                "difference_high": self.difference_high,
                "p_value": self.p_value, "always_valid_p": self.always_valid_p, "significant": self.significant,
                "needed": self.needed}


@dataclass(frozen=True)
class Result:
    """The figures of one split: the arms (control first), one comparison per other arm, and the verdict."""

    arms: tuple[Arm, ...]
    comparisons: tuple[Comparison, ...]
    alpha: float
    uplift_to_detect: float
    verdict: str
    # About how many more contacts each arm needs (arms growing in their current proportion) until every
    # comparison could detect `uplift_to_detect`; empty when that cannot be computed (no control rate yet).
    needed_by_arm: tuple[tuple[str, int], ...] = ()

    @property
    def holdout(self) -> bool:
        """The control is a holdout: the comparisons read as the effect of the whole workflow."""
        return bool(self.arms) and self.arms[0].holdout

    @property
    def needed(self) -> int | None:
        """About how many more contacts per variant until every comparison could detect `uplift_to_detect`: the
        largest figure of `needed_by_arm` (with unequal weights the other arms need fewer)."""
        return max(more for _, more in self.needed_by_arm) if self.needed_by_arm else None

    def to_dict(self) -> dict[str, object]:
        """`comparisons` and `verdict` of a split in `mauto stats --format json`."""
        return {"comparisons": [comparison.to_dict() for comparison in self.comparisons], "verdict": self.verdict}


# --- the figures of one pair --------------------------------------------------------------------------------------

def _z(alpha: float) -> float:
    """The two-sided critical value: 1.959964 for alpha 0.05."""
    return _NORMAL.inv_cdf(1 - alpha / 2)


def _pooled_p_value(control: Arm, variant: Arm) -> float | None:
    if not control.contacts or not variant.contacts:
        return None
    pooled = (control.conversions + variant.conversions) / (control.contacts + variant.contacts)
    variance = pooled * (1 - pooled) * (1 / control.contacts + 1 / variant.contacts)
    if variance <= 0:  # no conversions at all, or only conversions: nothing to test
        return None
    z = (variant.conversions / variant.contacts - control.conversions / control.contacts) / math.sqrt(variance)
    return math.erfc(abs(z) / math.sqrt(2))  # 2 * (1 - Phi(|z|)), accurate far into the tail


def _wilson(conversions: int, contacts: int, z: float) -> tuple[float, float]:
    rate = conversions / contacts
    centre = (rate + z * z / (2 * contacts)) / (1 + z * z / contacts)
    half = z * math.sqrt(rate * (1 - rate) / contacts + z * z / (4 * contacts * contacts)) / (1 + z * z / contacts)
    return max(0.0, centre - half), min(1.0, centre + half)


def _difference_interval(control: Arm, variant: Arm, z: float) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval (method 10 of Newcombe 1998)."""
    if not control.contacts or not variant.contacts:
        return None
    rate_a, rate_b = control.conversions / control.contacts, variant.conversions / variant.contacts
    low_a, high_a = _wilson(control.conversions, control.contacts, z)
    low_b, high_b = _wilson(variant.conversions, variant.contacts, z)
    difference = rate_b - rate_a
    return (difference - math.hypot(rate_b - low_b, high_a - rate_a),
            difference + math.hypot(high_b - rate_b, rate_a - low_a))


def _uplift_interval(control: Arm, variant: Arm, z: float) -> tuple[float, float] | None:
    """The log interval of the rate ratio (Katz et al. 1978), as an uplift; it needs conversions in both arms."""
    if not control.conversions or not variant.conversions:
        return None
    ratio = (variant.conversions / variant.contacts) / (control.conversions / control.contacts)
    half = z * math.sqrt(1 / variant.conversions - 1 / variant.contacts
                         + 1 / control.conversions - 1 / control.contacts)
    return math.exp(math.log(ratio) - half) - 1, math.exp(math.log(ratio) + half) - 1


def _log_likelihood_ratio(contacts_a: int, conversions_a: int, contacts_b: int, conversions_b: int,
                          mixing: float = MIXING_UPLIFT) -> float:
    """log Λ of the normal-mixture SPRT for θ = rate_b - rate_a against θ = 0, at one look.

    Λ = sqrt(V / (V + τ²)) · exp(τ² θ̂² / (2 V (V + τ²))), with θ̂ the observed difference,
    V = p̂(1 - p̂)(1/n_a + 1/n_b) its variance under the null (p̂ pooled), and τ = mixing · p̂ (the mixing
    distribution's scale: the absolute difference of that relative uplift). 0 (Λ = 1, no evidence) where V is 0.
    """
    if not contacts_a or not contacts_b:
        return 0.0
    pooled = (conversions_a + conversions_b) / (contacts_a + contacts_b)
    variance = pooled * (1 - pooled) * (1 / contacts_a + 1 / contacts_b)
    if variance <= 0:
        return 0.0
    difference = conversions_b / contacts_b - conversions_a / contacts_a
    tau2 = (mixing * pooled) ** 2
    return (0.5 * math.log(variance / (variance + tau2))
            + tau2 * difference * difference / (2 * variance * (variance + tau2)))


def _always_valid_p(looks: Sequence[tuple[int, int, int, int]]) -> float | None:
    """min(1, min over the looks of 1/Λ): by Ville's inequality P(ever <= alpha) <= alpha under the null."""
    p_value = 1.0
    seen = False
    for contacts_a, conversions_a, contacts_b, conversions_b in looks:
        if contacts_a and contacts_b:
            seen = True
            p_value = min(p_value, math.exp(-_log_likelihood_ratio(contacts_a, conversions_a, contacts_b,
                                                                    conversions_b)))
    return p_value if seen else None


def _enough_control(control: Arm, variant: Arm, alpha: float, uplift: float) -> int | None:
    """The control size (never below today's) at which a true `uplift` over the control rate would be declared by
    the always-valid test at level `alpha` with probability POWER at that one look, the variant growing in its
    current proportion; None without a control rate to grow from.

    Computed for the always-valid test, not a fixed-horizon one: the verdict comes from the always-valid figure,
    and a fixed-horizon size would promise a declaration that does not come when that many contacts are in."""
    rate_a = control.rate
    if rate_a is None or rate_a <= 0 or not variant.contacts:
        return None
    rate_b = rate_a * (1 + uplift)
    if not 0 < rate_b < 1:
        return None
    share = variant.contacts / control.contacts  # variant contacts per control contact
    pooled = (rate_a + share * rate_b) / (1 + share)
    tau2 = (MIXING_UPLIFT * pooled) ** 2
    unit_variance = pooled * (1 - pooled) * (1 + 1 / share)  # V = unit_variance / control contacts
    z_power = _NORMAL.inv_cdf(POWER)
    log_threshold = math.log(1 / alpha)

    def declared(contacts_a: int) -> bool:
        variance = unit_variance / contacts_a
        rho = tau2 / variance
        # Λ >= 1/alpha  <=>  |θ̂| / sqrt(V) >= z_crit
        z_crit = math.sqrt(2 * (1 + rho) / rho * (log_threshold + 0.5 * math.log1p(rho)))
        return abs(rate_b - rate_a) / math.sqrt(variance) - z_power >= z_crit

    low = control.contacts
    if declared(low):
        return low
    high = 2 * low
    while not declared(high):
        if high > _MOST_CONTACTS:
            return None
        low, high = high, 2 * high
    while high - low > 1:  # z grows as sqrt(n) and z_crit at most as sqrt(log n): declared() is monotone
        middle = (low + high) // 2
        low, high = (low, middle) if declared(middle) else (middle, high)
    return high


def _grown(contacts: int, enough: Fraction) -> int:
    """More contacts an arm of `contacts` needs when the split grows by the factor `enough`."""
    return max(0, math.ceil(contacts * enough) - contacts)


def _holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (valid under any dependence); None stays None and counts in m."""
    count = len(p_values)
    order = sorted(range(count), key=lambda index: (p_values[index] is None, p_values[index] or 0.0))
    adjusted: list[float | None] = [None] * count
    running = 0.0
    for rank, index in enumerate(order):
        p_value = p_values[index]
        if p_value is None:
            continue
        running = max(running, min(1.0, (count - rank) * p_value))
        adjusted[index] = running
    return adjusted


# --- the verdict --------------------------------------------------------------------------------------------------

def _rate_text(rate: float | None) -> str:
    if rate is None:
        return "-"
    if 0 < rate < 0.001:  # one decimal would say 0.0%
        return f"{rate * 100:.2g}%"
    return f"{rate * 100:.1f}%"


def _uplift_text(uplift: float) -> str:
    whole = math.floor(abs(uplift) * 100 + 0.5)
    return f"{'-' if uplift < 0 and whole else '+'}{whole}%"


def _p_text(p_value: float) -> str:
    return "< 0.001" if p_value < 0.001 else f"= {p_value:.3f}"


def _count_text(count: int) -> str:
    """About: two significant figures, thousands separated (3,387 is 3,400)."""
    if count >= 100:
        digits = len(str(count)) - 2
        count = int(round(count, -digits))
    return f"{count:,}"


def _evidence(comparison: Comparison, alpha: float, count: int) -> str:
    """', +28% (95% CI +9% … +47%), always-valid p = 0.004' (and the correction with several comparisons)."""
    parts = ""
    if comparison.uplift is not None:
        parts += f", {_uplift_text(comparison.uplift)}"
        if comparison.uplift_low is not None and comparison.uplift_high is not None:
            parts += (f" ({(1 - alpha) * 100:g}% CI {_uplift_text(comparison.uplift_low)} …"
                      f" {_uplift_text(comparison.uplift_high)})")
    p_value = comparison.always_valid_p_adjusted
    if p_value is not None:
        parts += f", always-valid p {_p_text(p_value)}"
        if count > 1:
            parts += f" (Holm-adjusted over {count} comparisons)"
    return parts


def _to_detect(arms: Sequence[Arm], needed_by_arm: Sequence[tuple[str, int]], uplift: float) -> str:
    control = arms[0]
    if not needed_by_arm:
        return f"; no conversions in {control.name} yet to measure an uplift from" if not control.conversions else ""
    uplift_words = f"a {_uplift_text(uplift)[1:]} uplift"
    most = max(more for _, more in needed_by_arm)
    if most == 0:
        return f"; {uplift_words} would likely have shown by now"
    contacts = [arm.contacts for arm in arms]
    if max(contacts) <= 1.25 * min(contacts):  # equal weights, up to the chance of the draw
        return f"; about {_count_text(most)} more contacts per variant to detect {uplift_words}"
    total = sum(more for _, more in needed_by_arm)
    each = ", ".join(f"{name} {_count_text(more)}" for name, more in needed_by_arm)
    return f"; about {_count_text(total)} more contacts ({each}) to detect {uplift_words}"


def _verdict(arms: Sequence[Arm], comparisons: Sequence[Comparison], alpha: float, uplift: float,
             needed_by_arm: Sequence[tuple[str, int]]) -> str:
    if len(arms) < 2:
        return "nothing to compare: a split needs two variants"
    if not any(arm.contacts for arm in arms):
        return "no contacts yet"
    empty = [arm.name for arm in arms if not arm.contacts]
    if empty:
        return f"no contacts in {', '.join(empty)} yet"
    contacts = sum(arm.contacts for arm in arms)
    if not any(arm.conversions for arm in arms):
        return f"no conversions yet in {contacts:,} contacts"
    control, holdout, count = arms[0], arms[0].holdout, len(comparisons)
    better = [c for c in comparisons if c.significant and c.difference is not None and c.difference > 0]
    worse = [c for c in comparisons if c.significant and c.difference is not None and c.difference < 0]
    rate_of = {arm.name: arm.rate for arm in arms}
    if better:
        best = max(better, key=lambda c: (c.variant_rate or 0.0, -(c.always_valid_p or 1.0)))
        rates = f"{_rate_text(best.variant_rate)} vs {_rate_text(best.control_rate)}"
        if holdout:
            which = f" (variant {best.variant})" if count > 1 else ""
            return f"the workflow adds conversions{which}: {rates} without it{_evidence(best, alpha, count)}"
        return f"{best.variant} converts better: {rates}{_evidence(best, alpha, count)}"
    if worse and len(worse) == count:
        # the control beats every other variant: shown against the best of them
        best = max(worse, key=lambda c: (c.variant_rate or 0.0, c.always_valid_p or 1.0))
        if holdout:
            which = f" (variant {best.variant})" if count > 1 else ""
            rates = f"{_rate_text(best.variant_rate)} vs {_rate_text(best.control_rate)} without it"
            return f"the workflow loses conversions{which}: {rates}{_evidence(best, alpha, count)}"
        rates = f"{_rate_text(best.control_rate)} vs {_rate_text(best.variant_rate)}"
        against = f" (against {best.variant}, the best of the others)" if count > 1 else ""
        return f"{control.name} converts better{against}: {rates}{_evidence(best, alpha, count)}"
    detect = _to_detect(arms, needed_by_arm, uplift)
    if worse:
        losers = "; ".join(
            f"{c.variant} converts worse than {control.name if not holdout else 'without the workflow'} "
            f"({_rate_text(rate_of[c.variant])} vs {_rate_text(rate_of[control.name])}, "
            f"always-valid p {_p_text(c.always_valid_p_adjusted or 0.0)})" for c in worse)
        opening = "no measurable gain from the workflow yet" if holdout else "no winner yet"
        return f"{opening}: {losers}{detect}"
    opening = "no measurable effect of the workflow yet" if holdout else "no difference yet"
    return f"{opening}{detect}"


# --- the public functions -----------------------------------------------------------------------------------------

def _control_first(arms: Sequence[Arm], path: Sequence[Day] | None) -> tuple[list[int], list[Arm]]:
    """The order the arms are compared in: as given, except that a holdout is always the control."""
    order = list(range(len(arms)))
    holdouts = [index for index, arm in enumerate(arms) if arm.holdout]
    if holdouts and holdouts[0] != 0:
        order.remove(holdouts[0])
        order.insert(0, holdouts[0])
    for number, day in enumerate(path or (), start=1):
        if len(day.contacts) != len(arms):
            raise ValueError(f"day {number} of the path has {len(day.contacts)} arms, the split {len(arms)}")
    return order, [arms[index] for index in order]


def _pair(control: Arm, variant: Arm, looks: list[tuple[int, int, int, int]], alpha: float,
          enough: int | None) -> Comparison:
    """The figures of one variant against the control, before the correction (adjusted p None, not significant);
    `enough`: the control size at which the uplift sought would be declared."""
    final = (control.contacts, control.conversions, variant.contacts, variant.conversions)
    if not looks or looks[-1] != final:
        looks = [*looks, final]
    z = _z(alpha)
    difference = _difference_interval(control, variant, z)
    interval = _uplift_interval(control, variant, z)
    rate_a, rate_b = control.rate, variant.rate
    return Comparison(
        variant=variant.name, control=control.name, variant_rate=rate_b, control_rate=rate_a,
        uplift=rate_b / rate_a - 1 if rate_a and rate_b is not None else None,
        uplift_low=interval[0] if interval else None, uplift_high=interval[1] if interval else None,
        difference=rate_b - rate_a if rate_a is not None and rate_b is not None else None,
        difference_low=difference[0] if difference else None, difference_high=difference[1] if difference else None,
        p_value=_pooled_p_value(control, variant), always_valid_p=_always_valid_p(looks),
        always_valid_p_adjusted=None, significant=False,
        needed=None if enough is None else max(_grown(control.contacts, Fraction(enough, control.contacts)),
                                               _grown(variant.contacts, Fraction(enough, control.contacts))))


def compare(arms: Sequence[Arm], path: Sequence[Day] | None = None, alpha: float = 0.05,
            uplift_to_detect: float = 0.10) -> Result:
    """Each arm after the first against the first (a holdout arm is moved first: it is the control).

    `path`: the cumulative counts at the end of each day so far (arms in the order of `arms`); the always-valid
    p-value is the minimum of 1/Λ over those looks and the arms' own counts (a last look when they differ from the
    path's last day). Without a path, the arms' counts are the only look. `alpha`: the level of the tests and of the
    intervals (1 - alpha); `uplift_to_detect`: the relative uplift `needed` is computed for (the mixture's scale
    is MIXING_UPLIFT, whatever the uplift asked). Never raises on counts that are merely empty or extreme; raises
    ValueError on impossible ones (more conversions than contacts, a path with another number of arms) and on an
    alpha or an uplift out of range.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    if not uplift_to_detect > 0:
        raise ValueError(f"uplift_to_detect must be above 0, not {uplift_to_detect}")
    order, ordered = _control_first(arms, path)
    count = len(ordered) - 1
    drafts = []
    growth: list[Fraction] = []
    for position in range(1, len(ordered)):
        control, variant = ordered[0], ordered[position]
        looks = [(day.contacts[order[0]], day.conversions[order[0]],
                  day.contacts[order[position]], day.conversions[order[position]]) for day in path or ()]
        # Holm's first step is the strictest: `needed` holds whatever the other comparisons do
        enough = _enough_control(control, variant, alpha / count, uplift_to_detect)
        if enough is not None:
            growth.append(Fraction(enough, control.contacts))
        drafts.append(_pair(control, variant, looks, alpha, enough))
    adjusted = _holm([draft.always_valid_p for draft in drafts])
    comparisons = tuple(replace(draft, always_valid_p_adjusted=p_value,
                                significant=p_value is not None and p_value <= alpha)
                        for draft, p_value in zip(drafts, adjusted, strict=True))
    # the split grows as a whole: by the factor the slowest comparison asks for
    needed_by_arm = tuple((arm.name, _grown(arm.contacts, max(growth))) for arm in ordered) if growth else ()
    verdict = _verdict(ordered, comparisons, alpha, uplift_to_detect, needed_by_arm)
    return Result(arms=tuple(ordered), comparisons=comparisons, alpha=alpha, uplift_to_detect=uplift_to_detect,
                  verdict=verdict, needed_by_arm=needed_by_arm)


def declares(result: Result, confidence: float) -> str | None:
    """The variant a split's `winner: {confidence: C}` would pick now, or None.

    The always-valid p-values are Holm-corrected at level 1 - C. Among the variants significantly better than the
    control, the one with the highest rate wins; the control wins when every other variant is significantly worse;
    otherwise there is no winner yet.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    alpha = 1 - confidence
    adjusted = _holm([comparison.always_valid_p for comparison in result.comparisons])
    significant = [comparison for comparison, p_value in zip(result.comparisons, adjusted, strict=True)
                   if p_value is not None and p_value <= alpha and comparison.difference]
    better = [comparison for comparison in significant if comparison.difference and comparison.difference > 0]
    if better:
        return max(better, key=lambda c: (c.variant_rate or 0.0, -(c.always_valid_p or 1.0))).variant
    if result.comparisons and len(significant) == len(result.comparisons):
        return result.comparisons[0].control
    return None
