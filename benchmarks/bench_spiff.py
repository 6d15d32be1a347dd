#!/usr/bin/env python
"""The same 5-step flow run by SpiffWorkflow 3.x and by `mauto simulate`, in memory, in one process.

    python benchmarks/bench_spiff.py [--contacts 20000] [--repeat 3] [--seed 7]
                                     [--profile-contacts 2000] [--no-profile] [--json]

Needs SpiffWorkflow (`pip install -e '.[bench]'`). The flow, identical on both sides: enter on a
`cart_abandoned` event, wait 1 h, email A when the contact's score is 50 or more, else email B, end.

  - SpiffWorkflow: `benchmarks/spiff/flow.bpmn`, a BPMN process (a none start event, a timer intermediate
    catch event of PT1H, an exclusive gateway on `score >= 50` with B as its default flow, a script task per
    email that builds the message as data (recipient, template, subject), an end event per branch), parsed
    once with `BpmnParser` (and checked against the BPMN schema). For each event, the driver sets the virtual
    clock to the event's moment, creates a `BpmnWorkflow` (one `PythonScriptEngine` shared by all, as
    SpiffWorkflow's example application does), puts the contact's data (score, email, first name) on its
    root task and runs `do_engine_steps()`: the instance stops WAITING at the timer, which has computed its
    due moment from the clock. The driver reads that moment from `waiting_events()` (what a host reads to
    know when to come back) and queues the instance; at the moment the clock first passes it (1 us after: the
    timer fires when its moment is strictly before now), `refresh_waiting_tasks()` and `do_engine_steps()`
    take it through the gateway, the script task and the end event. Its timer reads the time only through
    `datetime.now(timezone.utc)` in `SpiffWorkflow.bpmn.specs.event_definitions.timer`, so that name is
    replaced there, for SpiffWorkflow's runs only, by a `datetime` whose `now()` answers the virtual clock
    (as freezegun would): the engine's own comparison decides, nothing sleeps. The queue is a heap of
    (moment, sequence), as mauto's.
  - mauto: `benchmarks/spiff/` is a project (`mauto.yaml`, `workflows/cart-followup.yaml`, the templates
    `bench/a` and `bench/b`: a subject and a two-line HTML body each), loaded as `mauto simulate` loads it
    (`load_project`, `loader.load` + `model.build`), run by `Simulation(project, [workflow], samples, start,
    end, [workflow], keep_timeline=False).run()` with the same contacts (score, email, first name, email
    consent) and the same events. mauto does more per contact than SpiffWorkflow's script task: it renders
    the email (the subject and the HTML body through Jinja2, the text part made from the HTML, an HMAC-signed
    unsubscribe link, the headers) and checks consent, where the script task only builds a dict of three
    strings.

Not timed: parsing the BPMN, loading the project and the workflow, building the contacts and events (fresh
for each run: a simulation adds to its contacts). Timed: everything from there to the last instance's end,
on mauto's side the `Simulation`'s construction (its renderer, Jinja2 templates compiled on first use) and
`run()`. Both sides run `--repeat` times, interleaved (the side that goes first alternates), in this process,
with the garbage collector on (collected before each run, untimed); the figure of each is its best run. Both
sides must agree: as many contacts get A, and as many B, as the scores say (asserted).

Then a cProfile of the mauto side at `--profile-contacts`: the 15 functions with the most cumulative time.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import heapq
import io
import json
import os
import pstats
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine as describe  # noqa: E402
from mauto.config import load_project  # noqa: E402
from mauto.engine.records import ContactState, Event  # noqa: E402
from mauto.simulate import Samples, Simulation  # noqa: E402
from mauto.workflow.loader import load  # noqa: E402
from mauto.workflow.model import build  # noqa: E402

try:
    from SpiffWorkflow.bpmn import BpmnWorkflow
    from SpiffWorkflow.bpmn.parser import BpmnParser, BpmnValidator
    from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
    from SpiffWorkflow.bpmn.specs.event_definitions import timer as spiff_timer
except ImportError:  # pragma: no cover - the optional extra is missing
    raise SystemExit("bench_spiff.py needs SpiffWorkflow: pip install -e '.[bench]'") from None

HERE = ROOT / "benchmarks" / "spiff"
BPMN = HERE / "flow.bpmn"
PROCESS_ID = "cart_followup"
WORKFLOW = HERE / "workflows" / "cart-followup.yaml"
EMAIL_A, EMAIL_B = "bench/a", "bench/b"  # the templates, named alike on both sides
STEP_A, STEP_B = "email-a", "email-b"  # the mauto workflow's step ids
START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday; the project sets no quiet hours or send days
END = START + timedelta(days=2)  # every event falls in the first day, so all instances end before END
EVENT = "cart_abandoned"
THRESHOLD = 50
FIRST_NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Emma", "Farid", "Greta", "Hana", "Ines", "Jonas", "Kenji", "Léa"]
TICK = timedelta(microseconds=1)


# --------------------------------------------------------------------------------------------------------------------
# Inputs: the same contacts and events for both sides
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Person:
    id: str
    email: str
    first_name: str
    score: int
    at: datetime  # the moment of their cart_abandoned


def people(count: int, seed: int) -> list[Person]:
    """`count` contacts (seeded), each with a score from 0 to 99 and one cart abandoned in the first day."""
    rng = random.Random(seed)
    made = []
    for index in range(count):
        first = rng.choice(FIRST_NAMES)
        made.append(Person(f"c{index:06d}", f"{first.lower()}.{index}@mail.example", first, rng.randrange(100),
                           START + timedelta(seconds=rng.randrange(86_400), microseconds=rng.randrange(1_000_000))))
    return made


def expected(persons: list[Person]) -> dict[str, int]:
    """What both sides must send: how many contacts get A (score >= 50) and B."""
    a = sum(person.score >= THRESHOLD for person in persons)
    return {EMAIL_A: a, EMAIL_B: len(persons) - a}


def mauto_samples(persons: list[Person]) -> Samples:
    contacts = [ContactState(person.id, {"email": person.email, "first_name": person.first_name,
                                         "score": person.score, "email_consent": True}) for person in persons]
    events = sorted((Event(person.id, EVENT, person.at, {"cart_value": 42.0}) for person in persons),
                    key=lambda event: event.at)
    return Samples(contacts, events)


def spiff_inputs(persons: list[Person]) -> list[tuple[datetime, dict[str, Any]]]:
    """Each event's moment and the data its instance starts with, in the order of the events."""
    return sorted(((person.at, {"score": person.score, "email": person.email, "first_name": person.first_name})
                   for person in persons), key=lambda item: item[0])


# --------------------------------------------------------------------------------------------------------------------
# SpiffWorkflow
# --------------------------------------------------------------------------------------------------------------------

class VirtualClock(datetime):
    """A `datetime` whose `now()` is the driver's virtual moment (SpiffWorkflow's timers read only `now()`)."""

    current = START

    @classmethod
    def now(cls, tz=None):  # type: ignore[override]
        return cls.current if tz is None else cls.current.astimezone(tz)


@contextmanager
def virtual_time() -> Iterator[None]:
    """SpiffWorkflow's timer module reads the virtual clock inside, the real one again after."""
    real = spiff_timer.datetime
    spiff_timer.datetime = VirtualClock  # type: ignore[misc]
    try:
        yield
    finally:
        spiff_timer.datetime = real  # type: ignore[misc]


def spiff_spec():
    """The BPMN process, parsed and checked against the BPMN schema once (not timed)."""
    parser = BpmnParser(validator=BpmnValidator())
    parser.add_bpmn_file(str(BPMN))
    spec = parser.get_spec(PROCESS_ID)
    if parser.get_subprocess_specs(PROCESS_ID):
        raise SystemExit(f"{BPMN}: the benchmark's process calls no other process")
    return spec


def run_spiff(spec, inputs: list[tuple[datetime, dict[str, Any]]]) -> Counter:
    """Every instance from its event to its end on the virtual clock; the emails built, by template."""
    engine = PythonScriptEngine()
    sent: Counter = Counter()
    queue: list[tuple] = []
    sequence = 0
    for at, data in inputs:
        queue.append((at.timestamp(), sequence, at, None, data))
        sequence += 1
    heapq.heapify(queue)
    with virtual_time():
        while queue:
            _, _, at, workflow, data = heapq.heappop(queue)
            VirtualClock.current = at
            if workflow is None:  # the event: a new instance, run until it waits on its timer
                workflow = BpmnWorkflow(spec, script_engine=engine)
                workflow.task_tree.set_data(**data)
                workflow.do_engine_steps()
                waiting = workflow.waiting_events()
                if len(waiting) != 1:
                    raise AssertionError(f"an instance should wait on its timer, it waits on {len(waiting)} events")
                due = datetime.fromisoformat(waiting[0].value) + TICK
                heapq.heappush(queue, (due.timestamp(), sequence, due, workflow, None))
                sequence += 1
            else:  # its timer's moment has passed: on through the gateway and the email to the end
                workflow.refresh_waiting_tasks()
                workflow.do_engine_steps()
                if not workflow.is_completed():
                    raise AssertionError("an instance did not end after its timer fired")
                sent[workflow.data["message"]["template"]] += 1
    return sent


# --------------------------------------------------------------------------------------------------------------------
# mauto
# --------------------------------------------------------------------------------------------------------------------

def mauto_inputs():
    """The benchmark's project and workflow, as `mauto simulate` loads them (not timed)."""
    project = load_project(HERE / "mauto.yaml", HERE)
    workflow = build(load(WORKFLOW, project.display(WORKFLOW)))
    return project, workflow


def run_mauto(project, workflow, samples: Samples) -> Counter:
    """The simulation over the samples; the emails sent, by template (from the funnel's steps)."""
    result = Simulation(project, [workflow], samples, START, END, [workflow], keep_timeline=False).run()
    funnel = result.funnels[workflow.id]
    if funnel.entered != len(samples.contacts) or funnel.completed != len(samples.contacts):
        raise AssertionError(f"mauto: {funnel.entered} entered and {funnel.completed} completed of "
                             f"{len(samples.contacts)} contacts")
    return Counter({EMAIL_A: funnel.steps[STEP_A], EMAIL_B: funnel.steps[STEP_B]})


# --------------------------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------------------------

def timed(run, *args) -> tuple[float, Counter]:
    gc.collect()  # the previous run's garbage is not this run's
    start = time.perf_counter()
    sent = run(*args)
    return time.perf_counter() - start, sent


def check(side: str, sent: Counter, want: dict[str, int]) -> None:
    if dict(sent) != want:
        raise AssertionError(f"{side} sent {dict(sent)}, the scores say {want}")


def measure(persons: list[Person], repeat: int, say) -> dict[str, Any]:
    """Best of `repeat` interleaved runs of each side; both checked against the scores every time."""
    spec = spiff_spec()
    project, workflow = mauto_inputs()
    want = expected(persons)
    inputs = spiff_inputs(persons)
    runs: dict[str, list[float]] = {"spiff": [], "mauto": []}
    for round_number in range(repeat):
        order = ("spiff", "mauto") if round_number % 2 == 0 else ("mauto", "spiff")
        for side in order:
            if side == "spiff":
                seconds, sent = timed(run_spiff, spec, inputs)
            else:
                samples = mauto_samples(persons)  # fresh: a simulation adds events and messages to its contacts
                seconds, sent = timed(run_mauto, project, workflow, samples)
            check(side, sent, want)
            runs[side].append(seconds)
            say(f"  round {round_number + 1}: {side:5} {seconds:8.3f} s  {len(persons) / seconds:10,.0f} instances/s")
    best = {side: min(times) for side, times in runs.items()}
    return {
        "contacts": len(persons),
        "sent": want,
        "runs": runs,
        "best": best,
        "per_second": {side: len(persons) / seconds for side, seconds in best.items()},
        "ratio": best["spiff"] / best["mauto"],
    }


def profile_mauto(count: int, seed: int, top: int = 15) -> dict[str, Any]:
    """cProfile of one mauto run at `count` contacts: the `top` functions by cumulative time."""
    project, workflow = mauto_inputs()
    persons = people(count, seed)
    samples = mauto_samples(persons)
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    sent = run_mauto(project, workflow, samples)
    profiler.disable()
    check("mauto (profiled)", sent, expected(persons))
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (path, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{_short(path)}:{line}({name})", "calls": calls, "own": own,
                     "cumulative": cumulative})
    rows.sort(key=lambda row: row["cumulative"], reverse=True)
    total = max((row["cumulative"] for row in rows if "run_mauto" in row["function"]), default=0.0)
    render = sum(row["cumulative"] for row in rows
                 if row["function"].startswith("mauto/messages.py") and row["function"].endswith("(render)"))
    return {"contacts": count, "total": total, "render": render, "top": rows[:top]}


def _short(path: str) -> str:
    """A profiled function's file, relative to the repository or to site-packages."""
    for base in ("site-packages" + os.sep, str(ROOT) + os.sep):  # the venv may live inside the repository
        if base in path:
            return path.split(base, 1)[1]
    return path


def machine() -> dict[str, str]:
    try:
        load_average = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        load_average = "unknown"
    return describe(spiffworkflow=metadata.version("SpiffWorkflow"), jinja2=metadata.version("Jinja2"),
                    **{"load average at start": load_average})


# --------------------------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------------------------

def report(figures: dict[str, Any], profile: dict[str, Any] | None, about: dict[str, str], wall: float) -> str:
    lines = ["", "machine:"]
    lines += [f"  {key:22} {value}" for key, value in about.items()]
    contacts = figures["contacts"]
    sent = figures["sent"]
    lines += [
        "",
        f"the flow: {EVENT} -> wait 1h -> score >= {THRESHOLD} ? email A : email B -> end; "
        f"{contacts:,} contacts, one event each",
        f"both sides sent A to {sent[EMAIL_A]:,} and B to {sent[EMAIL_B]:,} contacts (checked on every run)",
        "",
        f"  {'':28} {'best':>9} {'instances/s':>12}   runs",
    ]
    names = {"spiff": f"SpiffWorkflow {about['spiffworkflow']}", "mauto": "mauto simulate"}
    for side in ("spiff", "mauto"):
        runs = ", ".join(f"{seconds:.3f}" for seconds in figures["runs"][side])
        lines.append(f"  {names[side]:28} {figures['best'][side]:8.3f}s {figures['per_second'][side]:12,.0f}"
                     f"   {runs} s")
    lines += [
        f"  {'ratio mauto / SpiffWorkflow':28} {figures['ratio']:8.2f}x   (aim: at least 10x)",
        "",
        "  Per contact, mauto renders the email it sends (Jinja2: subject and HTML body; the text part made from",
        "  the HTML; an HMAC-signed unsubscribe link; the headers) and checks consent; SpiffWorkflow's script",
        "  task only builds a dict of three strings (recipient, template, subject) and renders nothing.",
    ]
    if profile is not None:
        share = profile["render"] / profile["total"] if profile["total"] else 0.0
        lines += [
            "",
            f"mauto under cProfile, {profile['contacts']:,} contacts: {profile['total']:.3f} s, of which "
            f"MessageRenderer.render {profile['render']:.3f} s ({share:.0%}); top {len(profile['top'])} by "
            "cumulative time:",
            f"  {'cumulative':>10} {'own':>8} {'calls':>8}  function",
        ]
        lines += [f"  {row['cumulative']:9.3f}s {row['own']:7.3f}s {row['calls']:8,}  {row['function']}"
                  for row in profile["top"]]
    lines += ["", f"whole benchmark: {wall:.1f} s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--contacts", type=int, default=20_000, help="contacts, one event each (default 20,000)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each side (default 3: best of 3)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated contacts (default 7)")
    parser.add_argument("--profile-contacts", type=int, default=2_000,
                        help="contacts of the profiled mauto run (default 2,000)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled mauto run")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a report")
    args = parser.parse_args(argv)
    if args.contacts < 1 or args.repeat < 1 or args.profile_contacts < 1:
        parser.error("--contacts, --repeat and --profile-contacts must be at least 1")
    if not gc.isenabled():
        gc.enable()  # mauto simulate runs with it on

    began = time.perf_counter()
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if args.json else print
    about = machine()
    say(f"SpiffWorkflow {about['spiffworkflow']} against mauto simulate, {args.contacts:,} contacts, "
        f"best of {args.repeat} interleaved runs each")
    figures = measure(people(args.contacts, args.seed), args.repeat, say)
    profile = None if args.no_profile else profile_mauto(args.profile_contacts, args.seed)
    wall = time.perf_counter() - began
    if args.json:
        print(json.dumps({"machine": about, **figures, "profile": profile, "seconds": wall}, indent=2))
    else:
        print(report(figures, profile, about, wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
