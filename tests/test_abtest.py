"""The A/B statistics of `mauto stats` (mauto/abtest.py): the fixed-horizon figures against statsmodels, the
always-valid p-value against the formula of Johari, Koomen, Pekelis and Walsh (KDD 2017) worked by hand, a
simulated A/A test peeked at daily, the verdicts word for word, and the winner a split would pick."""
from __future__ import annotations

import json
import math
import random
import warnings

import numpy as np
import pytest
from statsmodels.stats import proportion as statsmodels_proportion  # type: ignore[import-untyped]
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    confint_proportions_2indep,
    proportions_ztest,
)

from mauto.abtest import MIXING_UPLIFT, Arm, Comparison, Day, Result, compare, declares

# --- 1. the fixed-horizon figures against statsmodels ----------------------------------------------------------

_SIZES = (1, 2, 3, 7, 20, 101, 1000, 25_000)


def _grid() -> list[tuple[int, int, int, int]]:
    """(control contacts, control conversions, variant contacts, variant conversions): every size against every
    size, with no conversions, one, a few percent, all but one, and all."""
    cases = []
    for contacts_a in _SIZES:
        for contacts_b in _SIZES:
            for conversions_a in sorted({0, 1, contacts_a // 30, contacts_a - 1, contacts_a} - {-1}):
                for conversions_b in sorted({0, 1, contacts_b // 25, contacts_b // 2, contacts_b} - {-1}):
                    if conversions_a <= contacts_a and conversions_b <= contacts_b:
                        cases.append((contacts_a, conversions_a, contacts_b, conversions_b))
    return cases


def _random_cases(count: int) -> list[tuple[int, int, int, int]]:
    """Random sizes from 1 to 200,000 (log-uniform, so small counts are many) and rates from 0 to 60%."""
    draw = random.Random(20261201)
    cases = []
    for _ in range(count):
        contacts_a = int(math.exp(draw.uniform(0, math.log(200_000))))
        contacts_b = int(math.exp(draw.uniform(0, math.log(200_000))))
        rate = draw.uniform(0, 0.6)
        conversions_a = min(contacts_a, round(contacts_a * rate * draw.uniform(0.5, 1.5)))
        conversions_b = min(contacts_b, round(contacts_b * rate * draw.uniform(0.5, 1.5)))
        cases.append((contacts_a, conversions_a, contacts_b, conversions_b))
    return cases


CASES = _grid() + _random_cases(600)


def _close(ours: float | None, oracle: float) -> bool:
    return ours is not None and math.isclose(ours, oracle, rel_tol=1e-9, abs_tol=1e-12)


def _comparison(contacts_a: int, conversions_a: int, contacts_b: int, conversions_b: int,
                alpha: float = 0.05) -> Comparison:
    result = compare([Arm("a", contacts_a, conversions_a), Arm("b", contacts_b, conversions_b)], alpha=alpha)
    return result.comparisons[0]


def test_the_grid_and_the_random_cases_are_many_and_include_small_counts():
    assert len(CASES) > 1500
    assert sum(1 for case in CASES if case[0] <= 3 or case[2] <= 3) > 200


@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_p_value_is_statsmodels_pooled_two_proportion_z_test(alpha):
    """Oracles: `proportions_ztest([x_b, x_a], [n_b, n_a])` (pooled variance, two-sided) and the same test as
    `test_proportions_2indep(..., method="score", compare="diff", correction=False)`."""
    compared = 0
    for contacts_a, conversions_a, contacts_b, conversions_b in CASES:
        ours = _comparison(contacts_a, conversions_a, contacts_b, conversions_b, alpha).p_value
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            _, ztest = proportions_ztest([conversions_b, conversions_a], [contacts_b, contacts_a])
            # imported through its module: pytest would collect a function named test_* as a test
            score = statsmodels_proportion.test_proportions_2indep(
                conversions_b, contacts_b, conversions_a, contacts_a, method="score", compare="diff",
                correction=False).pvalue
        case = (contacts_a, conversions_a, contacts_b, conversions_b)
        if math.isnan(ztest):  # no conversions at all, or conversions only: nothing to test
            assert ours is None, case
            continue
        assert _close(ours, float(ztest)), (case, ours, ztest)
        assert _close(ours, float(score)), (case, ours, score)
        compared += 1
    assert compared > 1400


@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_uplift_interval_is_statsmodels_log_ratio_interval(alpha):
    """Oracle: `confint_proportions_2indep(x_b, n_b, x_a, n_a, compare="ratio", method="log")`, minus 1. The log
    interval needs conversions in both arms: None without."""
    compared = 0
    for contacts_a, conversions_a, contacts_b, conversions_b in CASES:
        ours = _comparison(contacts_a, conversions_a, contacts_b, conversions_b, alpha)
        case = (contacts_a, conversions_a, contacts_b, conversions_b)
        if not conversions_a or not conversions_b:
            assert ours.uplift_low is None and ours.uplift_high is None, case
            continue
        low, high = confint_proportions_2indep(conversions_b, contacts_b, conversions_a, contacts_a,
                                               compare="ratio", method="log", alpha=alpha)
        assert _close(ours.uplift_low, float(low) - 1), (case, ours.uplift_low, low)
        assert _close(ours.uplift_high, float(high) - 1), (case, ours.uplift_high, high)
        assert ours.uplift == pytest.approx((conversions_b / contacts_b) / (conversions_a / contacts_a) - 1,
                                            rel=1e-12, abs=1e-15)
        compared += 1
    assert compared > 1000


@pytest.mark.parametrize("alpha", [0.05, 0.10])
def test_difference_interval_is_statsmodels_newcombe_interval(alpha):
    """Oracle: `confint_proportions_2indep(x_b, n_b, x_a, n_a, compare="diff", method="newcomb")` (Newcombe's
    hybrid score interval from two Wilson intervals), defined for every count, zeros and 100% included."""
    for contacts_a, conversions_a, contacts_b, conversions_b in CASES:
        ours = _comparison(contacts_a, conversions_a, contacts_b, conversions_b, alpha)
        low, high = confint_proportions_2indep(conversions_b, contacts_b, conversions_a, contacts_a,
                                               compare="diff", method="newcomb", alpha=alpha)
        case = (contacts_a, conversions_a, contacts_b, conversions_b)
        assert _close(ours.difference_low, float(low)), (case, ours.difference_low, low)
        assert _close(ours.difference_high, float(high)), (case, ours.difference_high, high)
        assert ours.difference == pytest.approx(conversions_b / contacts_b - conversions_a / contacts_a, abs=1e-15)


def test_a_textbook_case_with_its_numbers_written_out():
    """statsmodels' own docstring example of `proportions_ztest`: 5 of 83 against 12 of 99 gives p = 0.159."""
    comparison = _comparison(99, 12, 83, 5)
    assert comparison.p_value is not None and round(comparison.p_value, 3) == 0.159
    assert comparison.difference == pytest.approx(5 / 83 - 12 / 99)


# --- 2. the always-valid p-value against the paper's formula --------------------------------------------------

def test_always_valid_p_is_the_papers_mixture_likelihood_ratio_worked_by_hand():
    """Λ = sqrt(V / (V + τ²)) · exp(τ² θ̂² / (2 V (V + τ²))) (Johari et al. 2017, the normal mSPRT for a
    difference of two streams), with V the pooled variance of θ̂ and τ = 0.30 · p̂. a: 150 of 5,000 (3%),
    b: 225 of 5,000 (4.5%). Every number below is worked by hand from the one before."""
    assert MIXING_UPLIFT == 0.30
    pooled = 0.0375  # (150 + 225) / 10,000
    variance = 0.0000144375  # 0.0375 · 0.9625 · (1/5,000 + 1/5,000) = 0.03609375 · 0.0004
    tau2 = 0.0001265625  # (0.30 · 0.0375)² = 0.01125²
    theta = 0.015  # 225/5,000 - 150/5,000 = 0.045 - 0.030
    assert pooled * (1 - pooled) * (2 / 5000) == pytest.approx(variance, rel=1e-14)
    assert (0.3 * pooled) ** 2 == pytest.approx(tau2, rel=1e-14)
    total = 0.000141  # V + τ² = 0.0000144375 + 0.0001265625
    assert variance + tau2 == pytest.approx(total, rel=1e-14)
    root = math.sqrt(variance / total)  # sqrt(0.1023936170...) = 0.3199900264...
    exponent = tau2 * theta**2 / (2 * variance * total)  # 2.84765625e-8 / 4.071375e-9 = 6.9943354517...
    assert root == pytest.approx(0.3199900264, rel=1e-9)
    assert exponent == pytest.approx(6.9943354518, rel=1e-10)
    likelihood_ratio = root * math.exp(exponent)  # 0.31999 · 1,090.42 = 348.93
    assert likelihood_ratio == pytest.approx(348.9295, rel=1e-6)

    comparison = _comparison(5000, 150, 5000, 225)
    assert comparison.always_valid_p == pytest.approx(1 / likelihood_ratio, rel=1e-12)  # 0.002866
    assert comparison.significant
    assert comparison.p_value == pytest.approx(7.89022429e-05, rel=1e-8)  # the fixed-horizon p is far smaller


def test_always_valid_p_with_unequal_arms_worked_by_hand():
    """A 10% holdout at the same rates as above: h 60 of 2,000 (3%), the workflow 810 of 18,000 (4.5%). V weighs
    both arm sizes: V = p̂(1 - p̂)(1/n_a + 1/n_b), so the small holdout costs evidence."""
    pooled = 0.0435  # (60 + 810) / 20,000
    variance = 0.000023115416667  # 0.0435 · 0.9565 · (1/2,000 + 1/18,000) = 0.04160775 · 0.000555...
    assert pooled * (1 - pooled) * (1 / 2000 + 1 / 18000) == pytest.approx(variance, rel=1e-10)
    tau2 = 0.0001703025  # (0.30 · 0.0435)² = 0.01305²
    assert (0.3 * pooled) ** 2 == pytest.approx(tau2, rel=1e-14)
    theta = 0.015  # 810/18,000 - 60/2,000 = 0.045 - 0.030
    total = 0.000193417916667  # V + τ²
    root = math.sqrt(variance / total)  # sqrt(0.1195102143) = 0.3457024939
    exponent = tau2 * theta**2 / (2 * variance * total)  # 3.83180625e-8 / 8.941871469e-9 = 4.2852396875
    assert root == pytest.approx(0.3457024939, rel=1e-9)
    assert exponent == pytest.approx(4.2852396875, rel=1e-9)
    likelihood_ratio = root * math.exp(exponent)  # 0.3457 · 72.62 = 25.105
    assert likelihood_ratio == pytest.approx(25.1049, rel=1e-5)

    result = compare([Arm("h", 2000, 60, holdout=True), Arm("workflow", 18000, 810)])
    assert result.comparisons[0].always_valid_p == pytest.approx(1 / likelihood_ratio, rel=1e-9)  # 0.0398
    assert result.comparisons[0].significant
    # ten conversions fewer: Λ = 19.2 < 1/0.05
    short = compare([Arm("h", 2000, 60, holdout=True), Arm("workflow", 18000, 800)]).comparisons[0]
    assert short.always_valid_p == pytest.approx(_single_look_p(2000, 60, 18000, 800), rel=1e-12)
    assert short.always_valid_p == pytest.approx(1 / 19.2038, rel=1e-5) and not short.significant


def _single_look_p(contacts_a: int, conversions_a: int, contacts_b: int, conversions_b: int) -> float:
    """1/Λ at one look, from the formula (not from mauto)."""
    pooled = (conversions_a + conversions_b) / (contacts_a + contacts_b)
    variance = pooled * (1 - pooled) * (1 / contacts_a + 1 / contacts_b)
    tau2 = (0.30 * pooled) ** 2
    theta = conversions_b / contacts_b - conversions_a / contacts_a
    likelihood_ratio = math.sqrt(variance / (variance + tau2)) * math.exp(
        tau2 * theta**2 / (2 * variance * (variance + tau2)))
    return min(1.0, 1 / likelihood_ratio)


def test_always_valid_p_is_the_running_minimum_over_the_path_and_never_increases():
    # b runs ahead early (day 3 is its best), then the arms converge: 1/Λ of a single look rises again
    days = [Day((1000, 1000), (30, 42)), Day((2000, 2000), (60, 90)), Day((3000, 3000), (90, 150)),
            Day((4000, 4000), (125, 175)), Day((5000, 5000), (155, 190)), Day((6000, 6000), (185, 205))]
    single = [_single_look_p(d.contacts[0], d.conversions[0], d.contacts[1], d.conversions[1]) for d in days]
    # 0.854, 0.188, 0.0034, 0.064, 0.586, 1: the single-look figure goes back up after day 3
    assert single[2] == pytest.approx(0.0034, abs=5e-5) and single[2] < single[3] < single[4] < single[5] == 1.0
    seen: list[float] = []
    for number, day in enumerate(days, start=1):
        arms = [Arm("a", day.contacts[0], day.conversions[0]), Arm("b", day.contacts[1], day.conversions[1])]
        comparison = compare(arms, days[:number]).comparisons[0]
        assert comparison.always_valid_p is not None
        assert comparison.always_valid_p == pytest.approx(min(single[:number]), rel=1e-12)
        seen.append(comparison.always_valid_p)
    assert all(later <= earlier for earlier, later in zip(seen, seen[1:], strict=False))
    assert seen[-1] == seen[2] < 0.05  # declared on day 3 and still declared, though the arms converged
    # without the path, the last day alone: the fixed look has lost it
    alone = compare([Arm("a", 6000, 185), Arm("b", 6000, 205)]).comparisons[0]
    assert alone.always_valid_p == 1.0


def test_the_arms_counts_are_a_last_look_after_the_path():
    path = [Day((1000, 1000), (30, 45))]
    with_today = compare([Arm("a", 3000, 90), Arm("b", 3000, 150)], path).comparisons[0]
    assert with_today.always_valid_p == pytest.approx(_single_look_p(3000, 90, 3000, 150), rel=1e-12)


# --- 3. an A/A test peeked at daily -----------------------------------------------------------------------------

def _peeked_aa(runs: int, share_b: float, seed: int) -> tuple[int, int]:
    """`runs` A/A tests of 30 days, 300 arrivals a day split at random (share_b to b), one baseline rate per run
    drawn from 3% to 5%; compare() on each day's cumulative counts with the path so far. Returns how many runs
    ever declared a winner by the always-valid test, and by the fixed-horizon p-value read daily."""
    draw = random.Random(seed)
    rng = np.random.default_rng(draw.getrandbits(64))  # numpy's binomial draws, seeded from random.Random
    always_valid = fixed = 0
    for _ in range(runs):
        baseline = draw.uniform(0.03, 0.05)
        to_b = rng.binomial(300, share_b, size=30)
        contacts_a, contacts_b = np.cumsum(300 - to_b), np.cumsum(to_b)
        conversions_a = np.cumsum(rng.binomial(300 - to_b, baseline))
        conversions_b = np.cumsum(rng.binomial(to_b, baseline))
        path: list[Day] = []
        declared_always_valid = declared_fixed = False
        for day in range(30):
            counts = (int(contacts_a[day]), int(conversions_a[day]), int(contacts_b[day]), int(conversions_b[day]))
            path.append(Day((counts[0], counts[2]), (counts[1], counts[3])))
            comparison = compare([Arm("a", counts[0], counts[1]), Arm("b", counts[2], counts[3])],
                                 path).comparisons[0]
            declared_always_valid |= comparison.significant
            declared_fixed |= comparison.p_value is not None and comparison.p_value < 0.05
        always_valid += declared_always_valid
        fixed += declared_fixed
    return always_valid, fixed


def test_an_aa_test_peeked_at_daily_declares_a_winner_in_at_most_5_percent_of_1000_runs():
    always_valid, fixed = _peeked_aa(1000, 0.5, seed=13)
    assert always_valid <= 50, always_valid  # 13 runs (1.3%) with this seed
    assert fixed > 200, fixed  # the fixed-horizon p read daily: 295 runs (29.5%), six times its nominal 5%


def test_an_aa_test_with_a_10_percent_holdout_peeked_at_daily_stays_within_5_percent():
    always_valid, fixed = _peeked_aa(1000, 0.9, seed=14)
    assert always_valid <= 50, always_valid  # 4 runs (0.4%) with this seed
    assert fixed > 200, fixed  # 269 runs (26.9%)


# --- 4. effects, verdicts, several variants, holdouts, degenerate counts ---------------------------------------

def test_a_real_effect_is_declared_with_the_verdict_in_words():
    result = compare([Arm("a", 5000, 150), Arm("b", 5000, 225)])
    comparison = result.comparisons[0]
    assert comparison.significant and comparison.uplift == pytest.approx(0.5)
    assert result.verdict == "b converts better: 4.5% vs 3.0%, +50% (95% CI +22% … +84%), always-valid p = 0.003"
    assert declares(result, 0.95) == "b"


def test_the_control_winning_reads_with_a_negative_uplift():
    result = compare([Arm("a", 5000, 225), Arm("b", 5000, 150)])
    assert result.verdict == "a converts better: 4.5% vs 3.0%, -33% (95% CI -46% … -18%), always-valid p = 0.003"
    assert declares(result, 0.95) == "a"


def test_a_strong_effect_reads_p_below_a_thousandth():
    result = compare([Arm("a", 20000, 640), Arm("b", 20000, 820)])
    assert result.verdict == "b converts better: 4.1% vs 3.2%, +28% (95% CI +16% … +42%), always-valid p < 0.001"


def test_no_difference_yet_says_how_many_more_contacts_per_variant():
    result = compare([Arm("a", 5000, 160), Arm("b", 5000, 165)])
    assert result.comparisons[0].needed == 106_425  # checked against the formula in the next test
    assert result.needed == 106_425 and result.needed_by_arm == (("a", 106_425), ("b", 106_425))
    assert result.verdict == "no difference yet; about 110,000 more contacts per variant to detect a 10% uplift"
    assert declares(result, 0.95) is None


def _lambda_at_power(contacts_a: int, share: float, rate_a: float, uplift: float) -> float:
    """Λ at a look with contacts_a in the control and share · contacts_a in the variant, when the true uplift is
    `uplift` and θ̂ falls at its 20th percentile (so the test declares there with probability 80%)."""
    rate_b = rate_a * (1 + uplift)
    pooled = (rate_a + share * rate_b) / (1 + share)
    variance = pooled * (1 - pooled) * (1 / contacts_a + 1 / (share * contacts_a))
    tau2 = (0.30 * pooled) ** 2
    theta = (rate_b - rate_a) - 0.8416212335729143 * math.sqrt(variance)  # Φ⁻¹(0.80)
    return math.sqrt(variance / (variance + tau2)) * math.exp(tau2 * theta**2 / (2 * variance * (variance + tau2)))


def test_needed_is_where_a_true_uplift_would_be_declared_with_80_percent_power():
    """At 5,000 + needed contacts per arm and a true 10% uplift over 3.2%, the always-valid test declares with
    probability 80% at that look (θ̂ at its 20th percentile gives Λ >= 1/0.05); one contact fewer, not quite."""
    needed = compare([Arm("a", 5000, 160), Arm("b", 5000, 165)]).comparisons[0].needed
    assert needed == 106_425
    assert _lambda_at_power(5000 + needed, 1, 0.032, 0.10) >= 20 > _lambda_at_power(5000 + needed - 1, 1, 0.032, 0.10)
    needed = compare([Arm("a", 5000, 160), Arm("b", 5000, 165)], uplift_to_detect=0.3).comparisons[0].needed
    assert needed == 6_841
    assert _lambda_at_power(5000 + needed, 1, 0.032, 0.3) >= 20 > _lambda_at_power(5000 + needed - 1, 1, 0.032, 0.3)


def test_enough_contacts_and_still_no_difference():
    result = compare([Arm("a", 200_000, 6400), Arm("b", 200_000, 6500)])
    assert result.needed == 0
    assert result.verdict == "no difference yet; a 10% uplift would likely have shown by now"


def test_uplift_to_detect_changes_the_figure_asked_for_not_the_test():
    small = compare([Arm("a", 5000, 160), Arm("b", 5000, 165)], uplift_to_detect=0.3)
    assert small.comparisons[0].always_valid_p == compare([Arm("a", 5000, 160),
                                                          Arm("b", 5000, 165)]).comparisons[0].always_valid_p
    assert small.needed == 6_841
    assert small.verdict == "no difference yet; about 6,800 more contacts per variant to detect a 30% uplift"


def test_several_variants_are_corrected_for_the_number_of_comparisons():
    alone = compare([Arm("a", 5000, 150), Arm("b", 5000, 209)]).comparisons[0]
    assert alone.always_valid_p == pytest.approx(0.0342759, rel=1e-5) and alone.significant
    result = compare([Arm("a", 5000, 150), Arm("b", 5000, 209), Arm("c", 5000, 150)])
    b, c = result.comparisons
    assert b.always_valid_p == alone.always_valid_p
    assert b.always_valid_p_adjusted == pytest.approx(2 * 0.0342759, rel=1e-5) and not b.significant
    assert c.always_valid_p == 1.0 and c.always_valid_p_adjusted == 1.0
    # `needed` asks Holm's strictest step, 0.05 / 2 (Λ >= 40): more contacts than for a single comparison
    assert result.needed == 126_650
    assert _lambda_at_power(5000 + 126_650, 1, 0.03, 0.1) >= 40 > _lambda_at_power(5000 + 126_649, 1, 0.03, 0.1)
    assert result.verdict == "no difference yet; about 130,000 more contacts per variant to detect a 10% uplift"
    assert declares(result, 0.95) is None


def test_the_correction_is_holm_not_bonferroni():
    """b: p = 0.0077, c: p = 0.0343. Holm: b 2 · 0.0077 = 0.0154, c max(0.0154, 1 · 0.0343) = 0.0343, both
    declared; Bonferroni would leave c at 0.0686."""
    result = compare([Arm("a", 5000, 150), Arm("b", 5000, 219), Arm("c", 5000, 209)])
    b, c = result.comparisons
    assert b.always_valid_p == pytest.approx(0.00767197, rel=1e-5)
    assert c.always_valid_p == pytest.approx(0.0342759, rel=1e-5)
    assert b.always_valid_p_adjusted == pytest.approx(2 * 0.00767197, rel=1e-5)
    assert c.always_valid_p_adjusted == c.always_valid_p
    assert b.significant and c.significant
    assert result.verdict == ("b converts better: 4.4% vs 3.0%, +46% (95% CI +19% … +79%), always-valid p = 0.015"
                              " (Holm-adjusted over 2 comparisons)")


def test_several_variants_the_verdict_names_the_best_significant_one():
    result = compare([Arm("a", 5000, 150), Arm("b", 5000, 209), Arm("c", 5000, 219)])
    assert [c.significant for c in result.comparisons] == [True, True]
    assert result.verdict.startswith("c converts better: 4.4% vs 3.0%, +46%")
    assert declares(result, 0.95) == "c"


def test_several_variants_the_control_wins_against_the_best_of_the_others():
    result = compare([Arm("a", 20000, 640), Arm("b", 20000, 520), Arm("c", 20000, 500)])
    assert result.verdict == ("a converts better (against b, the best of the others): 3.2% vs 2.6%, -19% "
                              "(95% CI -28% … -9%), always-valid p = 0.011 (Holm-adjusted over 2 comparisons)")
    assert declares(result, 0.95) == "a"


def test_several_variants_one_worse_and_one_undecided_is_no_winner_yet():
    result = compare([Arm("a", 20000, 640), Arm("b", 20000, 520), Arm("c", 20000, 700)])
    assert result.verdict == ("no winner yet: b converts worse than a (2.6% vs 3.2%, always-valid p = 0.022); "
                              "about 100,000 more contacts per variant to detect a 10% uplift")
    assert declares(result, 0.95) is None


def test_a_holdout_reads_as_the_effect_of_the_whole_workflow():
    adds = compare([Arm("holdout", 2000, 60, holdout=True), Arm("workflow", 18000, 900)])
    assert adds.verdict == ("the workflow adds conversions: 5.0% vs 3.0% without it, +67% (95% CI +29% … +116%), "
                            "always-valid p = 0.003")
    loses = compare([Arm("holdout", 2000, 84, holdout=True), Arm("workflow", 18000, 520)])
    assert loses.verdict == ("the workflow loses conversions: 2.9% vs 4.2% without it, -31% (95% CI -45% … -14%), "
                             "always-valid p = 0.030")
    none_yet = compare([Arm("holdout", 2000, 60, holdout=True), Arm("workflow", 18000, 756)])
    # the arms grow 1 to 9: 2,000 + 66,976 = 68,976 in the holdout, 9 · 68,976 = 620,784 = 18,000 + 602,784
    assert none_yet.needed_by_arm == (("holdout", 66_976), ("workflow", 602_784))
    assert _lambda_at_power(68_976, 9, 0.03, 0.1) >= 20 > _lambda_at_power(68_975, 9, 0.03, 0.1)
    assert none_yet.verdict == ("no measurable effect of the workflow yet; about 670,000 more contacts "
                                "(holdout 67,000, workflow 600,000) to detect a 10% uplift")


def test_a_holdout_listed_last_is_the_control():
    result = compare([Arm("workflow", 18000, 900), Arm("holdout", 2000, 60, holdout=True)],
                     [Day((9000, 1000), (450, 30))])
    assert result.holdout and [arm.name for arm in result.arms] == ["holdout", "workflow"]
    comparison = result.comparisons[0]
    assert (comparison.control, comparison.variant) == ("holdout", "workflow")
    assert comparison.uplift == pytest.approx(0.05 / 0.03 - 1)
    assert comparison.always_valid_p == pytest.approx(min(_single_look_p(1000, 30, 9000, 450),
                                                          _single_look_p(2000, 60, 18000, 900)), rel=1e-12)
    assert result.verdict.startswith("the workflow adds conversions: 5.0% vs 3.0% without it")
    assert declares(result, 0.95) == "workflow"


def test_a_holdout_with_several_variants_names_the_variant():
    result = compare([Arm("holdout", 2000, 60, holdout=True), Arm("b", 9000, 450), Arm("c", 9000, 300)])
    assert result.verdict.startswith("the workflow adds conversions (variant b): 5.0% vs 3.0% without it, +67%")


@pytest.mark.parametrize(("arms", "verdict"), [
    ([], "nothing to compare: a split needs two variants"),
    ([Arm("a", 40, 3)], "nothing to compare: a split needs two variants"),
    ([Arm("a", 0, 0), Arm("b", 0, 0)], "no contacts yet"),
    ([Arm("a", 12, 1), Arm("b", 0, 0)], "no contacts in b yet"),
    ([Arm("a", 0, 0), Arm("b", 12, 1), Arm("c", 0, 0)], "no contacts in a, c yet"),
    ([Arm("a", 1200, 0), Arm("b", 1300, 0)], "no conversions yet in 2,500 contacts"),
    ([Arm("a", 50, 50), Arm("b", 60, 60)], "no difference yet"),
    ([Arm("a", 1, 1), Arm("b", 1, 0)], "no difference yet"),
    ([Arm("a", 300, 0), Arm("b", 300, 9)], "no difference yet; no conversions in a yet to measure an uplift from"),
    ([Arm("a", 300, 300), Arm("b", 300, 0)],
     "a converts better: 100.0% vs 0.0%, -100%, always-valid p < 0.001"),
    ([Arm("h", 0, 0, holdout=True), Arm("b", 0, 0)], "no contacts yet"),
])
def test_degenerate_counts_never_raise_and_say_so_in_words(arms, verdict):
    result = compare(arms)
    assert result.verdict == verdict
    # the JSON of `mauto stats` never holds NaN or infinity
    json.dumps(result.to_dict(), allow_nan=False)
    declares(result, 0.95)


def test_degenerate_figures_are_none():
    nobody = compare([Arm("a", 0, 0), Arm("b", 0, 0)]).comparisons[0]
    assert nobody.to_dict() == {
        "variant": "b", "control": "a", "uplift": None, "uplift_low": None, "uplift_high": None,
        "difference": None, "difference_low": None, "difference_high": None, "p_value": None,
        "always_valid_p": None, "significant": False, "needed": None}
    nothing = compare([Arm("a", 1200, 0), Arm("b", 1300, 0)]).comparisons[0]
    assert (nothing.uplift, nothing.p_value, nothing.always_valid_p, nothing.needed) == (None, None, 1.0, None)
    assert nothing.difference == 0.0
    everyone = compare([Arm("a", 50, 50), Arm("b", 60, 60)]).comparisons[0]
    assert (everyone.uplift, everyone.uplift_low, everyone.uplift_high) == (0.0, 0.0, 0.0)
    assert (everyone.p_value, everyone.always_valid_p, everyone.needed) == (None, 1.0, None)
    from_zero = compare([Arm("a", 300, 0), Arm("b", 300, 9)]).comparisons[0]
    assert from_zero.uplift is None and from_zero.difference == pytest.approx(0.03)
    assert from_zero.p_value == pytest.approx(0.0025048, rel=1e-4) and not from_zero.significant  # z = 3.0228


def test_impossible_counts_and_options_are_refused():
    with pytest.raises(ValueError, match="variant b: 5 conversions of 4 contacts"):
        Arm("b", 4, 5)
    with pytest.raises(ValueError, match="day with contacts"):
        Day((10, 10), (1, 11))
    with pytest.raises(ValueError, match="day 1 of the path has 3 arms, the split 2"):
        compare([Arm("a", 10, 1), Arm("b", 10, 1)], [Day((5, 5, 5), (0, 0, 0))])
    with pytest.raises(ValueError, match="alpha"):
        compare([Arm("a", 10, 1), Arm("b", 10, 1)], alpha=0)
    with pytest.raises(ValueError, match="uplift_to_detect"):
        compare([Arm("a", 10, 1), Arm("b", 10, 1)], uplift_to_detect=0)
    with pytest.raises(ValueError, match="confidence"):
        declares(compare([Arm("a", 10, 1), Arm("b", 10, 1)]), 1.0)


def test_to_dict_has_the_keys_of_stats_shape():
    result = compare([Arm("a", 5000, 150), Arm("b", 5000, 225)])
    assert result.to_dict() == {
        "comparisons": [{
            "variant": "b", "control": "a",
            "uplift": pytest.approx(0.5), "uplift_low": pytest.approx(0.2246065632),
            "uplift_high": pytest.approx(0.8373247929),
            "difference": pytest.approx(0.015), "difference_low": pytest.approx(0.0075678281),
            "difference_high": pytest.approx(0.0225123815),
            "p_value": pytest.approx(7.89022429e-05), "always_valid_p": pytest.approx(0.0028659081),
            "significant": True, "needed": 114_111}],
        "verdict": "b converts better: 4.5% vs 3.0%, +50% (95% CI +22% … +84%), always-valid p = 0.003"}
    assert isinstance(result, Result)


# --- 5. the winner a split would pick ---------------------------------------------------------------------------

def test_declares_follows_the_confidence_asked():
    result = compare([Arm("a", 5000, 150), Arm("b", 5000, 209)])  # always-valid p = 0.0343
    assert declares(result, 0.95) == "b"
    assert declares(result, 0.99) is None
    assert declares(result, 0.90) == "b"


def test_declares_applies_the_correction_at_the_confidence_asked():
    result = compare([Arm("a", 5000, 150), Arm("b", 5000, 219), Arm("c", 5000, 209)])
    assert declares(result, 0.95) == "b"  # Holm-adjusted 0.0154 and 0.0343: both declared, b has the higher rate
    assert declares(result, 0.98) == "b"  # 0.0154 <= 0.02 < 0.0343: b alone
    assert declares(result, 0.99) is None  # 0.0154 > 0.01


def test_declares_picks_the_highest_rate_among_the_declared():
    result = compare([Arm("a", 5000, 150), Arm("b", 5000, 209), Arm("c", 5000, 219)])
    assert declares(result, 0.95) == "c"  # c also has the smaller p, but the rate decides
    result = compare([Arm("a", 20000, 600), Arm("b", 20000, 900), Arm("c", 20000, 760)])
    assert [c.significant for c in result.comparisons] == [True, True]
    assert declares(result, 0.95) == "b"


def test_declares_the_control_only_when_every_other_variant_is_worse():
    assert declares(compare([Arm("a", 20000, 640), Arm("b", 20000, 520), Arm("c", 20000, 500)]), 0.95) == "a"
    assert declares(compare([Arm("a", 20000, 640), Arm("b", 20000, 520), Arm("c", 20000, 700)]), 0.95) is None
    assert declares(compare([Arm("a", 0, 0), Arm("b", 0, 0)]), 0.95) is None
    assert declares(compare([Arm("a", 10, 1)]), 0.95) is None
