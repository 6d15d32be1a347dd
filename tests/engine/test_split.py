"""Split: a stable hash of (workflow id, split id, contact id), in the proportions of the weights."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest

from mauto.engine.interpreter import variant_for
from mauto.engine.state import Enrollment

from .helpers import Run, contact, engine, utc, workflow

T0 = utc(2026, 6, 10, 10, 0)
IDS = [f"contact-{number}" for number in range(10_000)]


@pytest.mark.parametrize("weights", [{"a": 50, "b": 50}, {"big": 70, "small": 20, "none": 10},
                                     {"a": 34, "b": 33, "c": 33}, {"test": 90, "holdout": 10}])
def test_10000_contacts_fall_within_two_points_of_each_weight(weights):
    counts = Counter(variant_for("abandoned-cart", "subject-test", contact_id, weights) for contact_id in IDS)
    assert set(counts) == set(weights)
    for name, weight in weights.items():
        assert abs(counts[name] / len(IDS) * 100 - weight) <= 2, (name, counts)


def test_proportions_hold_for_other_workflow_and_split_ids_and_numeric_contact_ids():
    numeric = [str(number) for number in range(100_000, 110_000)]
    for workflow_id, split_id in [("welcome", "steps.3"), ("winback", "offer"), ("x", "y")]:
        counts = Counter(variant_for(workflow_id, split_id, contact_id, {"a": 70, "b": 20, "c": 10})
                         for contact_id in numeric)
        assert abs(counts["a"] / 100 - 70) <= 2 and abs(counts["b"] / 100 - 20) <= 2
        assert abs(counts["c"] / 100 - 10) <= 2


def test_the_variant_is_a_stable_hash_pinned_across_runs_and_versions():
    # sha256 of "workflow\x1fsplit\x1fcontact": no Python hash(), so no PYTHONHASHSEED, no process dependence
    assert [variant_for("abandoned-cart", "subject-test", contact_id, {"a": 50, "b": 50})
            for contact_id in ("c1", "c2", "c3", "ana@example.com", "42")] == ["b", "a", "b", "a", "a"]
    assert [variant_for("abandoned-cart", "offer", contact_id, {"big": 70, "small": 20, "none": 10})
            for contact_id in ("c1", "c2", "c3")] == ["big", "big", "small"]
    digest = hashlib.sha256(b"abandoned-cart\x1fsubject-test\x1fc1").digest()
    bucket = int.from_bytes(digest[:8], "big") % 10_000 / 100
    assert (bucket >= 50) == (variant_for("abandoned-cart", "subject-test", "c1", {"a": 50, "b": 50}) == "b")


def test_the_variant_is_the_same_in_another_process_with_another_hash_seed():
    program = ("from mauto.engine.interpreter import variant_for\n"
               "print(''.join(variant_for('wf', 's', f'c{n}', {'a': 50, 'b': 50}) for n in range(300)))")
    here = "".join(variant_for("wf", "s", f"c{n}", {"a": 50, "b": 50}) for n in range(300))
    for seed in ("1", "4242"):
        output = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True,
                                env={**os.environ, "PYTHONHASHSEED": seed})
        assert output.stdout.strip() == here


def test_the_split_id_and_the_workflow_id_both_matter():
    ids = IDS[:2000]
    weights = {"a": 50, "b": 50}
    base = [variant_for("w", "s", contact_id, weights) for contact_id in ids]
    other_split = [variant_for("w", "t", contact_id, weights) for contact_id in ids]
    other_workflow = [variant_for("v", "s", contact_id, weights) for contact_id in ids]
    # independent: about half agree, not all
    for other in (other_split, other_workflow):
        agree = sum(x == y for x, y in zip(base, other, strict=True)) / len(ids)
        assert 0.45 < agree < 0.55


SPLIT = """
steps:
  - id: test-step
    split:
      {split_id}variants:
        a: {{weight: 50, steps: [{{score: 1}}]}}
        b: {{weight: 50, steps: [{{score: 2}}]}}
"""


@pytest.mark.parametrize(("split_id", "used"), [("id: subject-test\n      ", "subject-test"), ("", "test-step")])
def test_the_engine_uses_the_split_id_or_the_step_id(split_id, used):
    flow = workflow(SPLIT.format(split_id=split_id))
    for contact_id in IDS[:50]:
        run = Run(flow, contact(contact_id))
        run.enroll(T0)
        expected = variant_for("wf", used, contact_id, {"a": 50, "b": 50})
        assert run.enrollment.variants == {used: expected}
        assert run.effects[0].data["points"] == {"a": 1, "b": 2}[expected]


def test_a_split_without_ids_uses_its_path():
    flow = workflow("steps:\n  - wait: 1h\n  - split:\n      variants:\n        a: {weight: 50}\n"
                    "        b: {weight: 50}\n")
    run = Run(flow, contact("c7"))
    run.enroll(T0)
    run.advance(T0 + timedelta(hours=1))
    assert run.enrollment.variants == {"steps.1": variant_for("wf", "steps.1", "c7", {"a": 50, "b": 50})}


def test_the_same_contact_gets_the_same_variant_from_separate_engines_and_enrollments():
    flow = workflow(SPLIT.format(split_id=""))
    chosen = set()
    for _ in range(3):
        run = Run(flow, contact("c42"), engine())
        run.enroll(T0 + timedelta(days=_))
        chosen.add(run.enrollment.variants["test-step"])
    assert len(chosen) == 1


def test_an_enrollment_keeps_the_variant_it_was_given():
    flow = workflow(SPLIT.format(split_id=""))
    run = Run(flow, contact("c1"))
    run.enroll(T0)
    given = run.enrollment.variants["test-step"]
    # a variant already in the state (e.g. from a migrated version) is kept, not recomputed
    flipped = {"a": "b", "b": "a"}[given]
    again = Run(flow, contact("c1"))
    again.enrollment = Enrollment("e2", "wf", 1, "c1", T0.isoformat(), position="steps.0",
                                  variants={"test-step": flipped})
    again.advance(T0)
    assert again.enrollment.variants == {"test-step": flipped}
    assert again.effects[0].data["points"] == {"a": 1, "b": 2}[flipped]
