#!/usr/bin/env python
"""How fast is `mauto simulate`, measured against bare Jinja2 renders of the messages it produces.

    python benchmarks/bench_simulate.py [--contacts 100000] [--horizon 30d] [--seed 7] [--repeat 1]
                                        [--memory-contacts 20000] [--memory-horizons 30d,365d] [--memory-every 31d]
                                        [--profile-contacts 2000] [--no-memory] [--no-trace] [--no-profile]

Runs the sample project's `workflows/abandoned-cart.yaml` (a wait, an A/B
split of the first reminder, a wait, a coupon, a second reminder, a wait_for
on a click, then a branch: last call by SMS or by email) for N generated
contacts (seeded, so every run gets the same ones): all with email consent,
some with a phone and SMS consent, in a mix of time zones; one
`cart_abandoned` each, spread over the first day; some place an order later
(exit_on) and some click the second reminder (wait_for's on_event). The
project is the real one at the repository root (`load_project`), the workflow
is loaded and built as `mauto simulate` does (`loader.load` + `model.build`),
and the coupon pool gets one code per contact.

In the same run it times:

  (a) the simulation: `Simulation(..., keep_timeline=False, on_message=...)`
      constructed and run, the garbage collector on, as `mauto simulate` runs;
  (b) the floor: the same number of bare Jinja2 renders of the same templates
      the simulation rendered (for each message: the subject, the HTML body and
      the text part when the template has one; for an SMS its text), through a
      plain `jinja2.Environment` over `templates/` (front matter stripped,
      templates compiled once, HTML autoescaped as mauto does), with contexts
      of the same shape (contact with every declared field, event, vars,
      now, unsubscribe_url), built before the clock starts.

(a) runs once per `--repeat`, each run followed by three of (b). Prints
contacts, contact-steps (timeline entries recorded, kept or not, counted in
`Simulation.record`), steps/s, messages, both times and their ratio (the aim:
the simulation in at most 3x the bare renders), how the simulation's time
splits between rendering messages (`MessageRenderer.render`) and the rest, the
garbage collector's share, the peak RSS during the simulation and ru_maxrss.

Then memory against the horizon, each run in a fresh child process at
`--memory-contacts`: for each of `--memory-horizons`, once under tracemalloc
(started after the samples are built: the peak is the simulation's own) and
once without (peak RSS, VmHWM reset just before the simulation), plus the
longest horizon with a cart abandoned again every `--memory-every` (contacts
re-enter: twice the activity in the same horizon); for each, what the finished
simulation still holds, structure by structure. Last, a cProfile of a
`--profile-contacts` run, grouped by what the time is spent on. At 100,000
contacts the whole takes about 9 minutes on a 2-core VM, the traced runs
being the slowest part (`--no-trace` or `--no-memory` to skip them).

Only public entry points of mauto are used: `Simulation` (subclassed to count
the entries it records), `MessageRenderer` (subclassed to time `render`).
"""
from __future__ import annotations

import argparse
import array
import cProfile
import gc
import json
import os
import pstats
import random
import resource
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jinja2  # noqa: E402

from benchmarks.machine import machine as describe  # noqa: E402
from mauto.config import load_project  # noqa: E402
from mauto.engine.records import ContactState, Event  # noqa: E402
from mauto.engine.timing import zone  # noqa: E402
from mauto.messages import MessageRenderer  # noqa: E402
from mauto.simulate import Samples, Simulation  # noqa: E402
from mauto.templates import TEXT_PART, split_front_matter  # noqa: E402
from mauto.workflow.durations import parse_duration  # noqa: E402
from mauto.workflow.loader import load  # noqa: E402
from mauto.workflow.model import build  # noqa: E402

WORKFLOW = "workflows/abandoned-cart.yaml"
# A Monday at midnight in the project's zone (Europe/Paris): send_days skips Sundays, quiet hours apply.
START = datetime(2026, 3, 2, 0, 0, tzinfo=zone("Europe/Paris"))

# zone, share (%), country, city, phone prefix
ZONES = [
    ("Europe/Paris", 35, "FR", "Lyon", "+336"),
    ("Europe/London", 10, "GB", "Leeds", "+447"),
    ("Europe/Berlin", 10, "DE", "Hamburg", "+4915"),
    ("America/New_York", 20, "US", "Boston", "+1617"),
    ("America/Los_Angeles", 10, "US", "Oakland", "+1510"),
    ("Asia/Tokyo", 10, "JP", "Osaka", "+8190"),
    ("Australia/Sydney", 5, "AU", "Sydney", "+614"),
]
FIRST_NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Emma", "Farid", "Greta", "Hana", "Ines", "Jonas", "Kenji", "Léa"]
LAST_NAMES = ["Martin", "Carter", "Dubois", "Ivanov", "Schulz", "Okafor", "Sato", "Rossi", "García", "Nguyen"]
SMS_SHARE = 0.30  # contacts with a phone and SMS consent: their last call goes by SMS
ORDER_SHARE = 0.20  # contacts who order later: exit_on order_placed
CLICK_SHARE = 0.15  # contacts who click the second reminder: wait_for's on_event branch


# --------------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------------

def load_inputs():
    """The real project at the repository root and its abandoned-cart workflow, as `mauto simulate` loads them."""
    project = load_project(ROOT / "mauto.yaml", ROOT)
    path = ROOT / WORKFLOW
    workflow = build(load(path, project.display(path)))
    return project, workflow


def coupon_pools(workflow) -> list[str]:
    pools = []
    for top in workflow.steps:
        for step in top.iter_steps():
            if step.kind == "assign_coupon" and step.value["pool"] not in pools:
                pools.append(step.value["pool"])
    return pools


def make_samples(count: int, seed: int, pools: list[str], every: timedelta | None = None,
                 horizon: timedelta | None = None) -> tuple[Samples, dict]:
    """`count` contacts, one cart_abandoned each over the first day, some orders and clicks later (seeded).

    With `every`, each contact abandons a cart again every `every` until `horizon` (the same cart, order or
    click each time), so contacts re-enter the workflow (its reentry: after 30d).
    """
    rng = random.Random(seed)
    weights = [share for _, share, *_ in ZONES]
    contacts: list[ContactState] = []
    events: list[Event] = []
    zones: Counter = Counter()
    sms = orders = clicks = carts = 0
    for index in range(count):
        contact_id = f"c{index:06d}"
        tz, _, country, city, prefix = rng.choices(ZONES, weights)[0]
        zones[tz] += 1
        first = rng.choice(FIRST_NAMES)
        fields = {
            "email": f"{first.lower()}.{index}@mail.example",
            "first_name": first if rng.random() < 0.9 else None,  # some have no first name: 'there'
            "last_name": rng.choice(LAST_NAMES),
            "timezone": tz,
            "country": country,
            "city": city,
            "email_consent": True,
            "sms_consent": False,
            "lifecycle": rng.choice(["subscriber", "lead", "customer"]),
            "loyalty_tier": rng.choice(["bronze", "silver", "gold"]),
            "score": rng.randrange(0, 40),
            "tags": ["newsletter"],
            "lists": ["newsletter"],
        }
        if rng.random() < SMS_SHARE:
            fields["phone"] = f"{prefix}{rng.randrange(10**7, 10**8)}"
            fields["sms_consent"] = True
            sms += 1
        contacts.append(ContactState(contact_id, fields))
        first_at = START + timedelta(seconds=rng.randrange(86_400))
        cart = {"cart_value": round(rng.uniform(20, 400), 2), "items": rng.randrange(1, 6),
                "cart_url": f"https://shop.lumio.example/cart/{index:06d}"}
        roll = rng.random()
        if roll < ORDER_SHARE:  # anywhere from 2 hours to 4 days later: exits at every stage
            later = ("order_placed", timedelta(seconds=rng.randrange(7_200, 345_600)), {
                "total": round(rng.uniform(20, 400), 2), "order_id": f"LU-{index:06d}", "first_order": False,
                "product_category": "lighting"})
        elif roll < ORDER_SHARE + CLICK_SHARE:  # while the wait_for after reminder-2 waits, mostly
            later = ("email_clicked", timedelta(seconds=rng.randrange(216_000, 302_400)), {
                "workflow": "abandoned-cart", "step": "reminder-2", "template": "cart/reminder-2",
                "url": f"https://shop.lumio.example/cart/{index:06d}"})
        else:
            later = None
        at = first_at
        while True:
            carts += 1
            events.append(Event(contact_id, "cart_abandoned", at, dict(cart)))
            if later is not None:
                orders += later[0] == "order_placed"
                clicks += later[0] == "email_clicked"
                events.append(Event(contact_id, later[0], at + later[1], dict(later[2])))
            if every is None or horizon is None or at + every >= START + horizon:
                break
            at += every
    events.sort(key=lambda event: event.at)
    coupons = {pool: [f"{pool}-{number:07d}" for number in range(carts + 10)] for pool in pools}
    info = {"zones": zones, "sms": sms, "orders": orders, "clicks": clicks, "carts": carts, "events": len(events),
            "codes": carts + 10}
    return Samples(contacts, events, coupons), info


# --------------------------------------------------------------------------------------------------------------------
# The two sides
# --------------------------------------------------------------------------------------------------------------------

class CountingSimulation(Simulation):
    """A Simulation that counts the timeline entries it records (kept or not): `record` is what its memory
    ports hand the step log to."""

    entries = 0

    def record(self, entries) -> None:
        self.entries += len(entries)
        super().record(entries)


class TimedRenderer(MessageRenderer):
    """MessageRenderer.render with a stopwatch: the simulation's time spent rendering messages."""

    spent = 0.0

    def render(self, effect, contact, declared):
        start = time.perf_counter()
        try:
            return super().render(effect, contact, declared)
        finally:
            self.spent += time.perf_counter() - start


class Recorder:
    """What the simulation rendered, compactly (so it does not weigh on the memory measured): one kind per message
    (channel, template, subject) and the contact's index."""

    def __init__(self) -> None:
        self.kinds: dict[tuple, int] = {}
        self.kind_of = array.array("H")
        self.contact_of = array.array("I")

    def __call__(self, message) -> None:
        key = (message.channel, message.template, message.subject)
        kind = self.kinds.get(key)
        if kind is None:
            kind = self.kinds[key] = len(self.kinds)
        self.kind_of.append(kind)
        self.contact_of.append(int(message.contact[1:]))

    def __len__(self) -> int:
        return len(self.kind_of)


def simulate(project, workflow, samples: Samples, horizon: timedelta, on_message=None, timed: bool = True):
    renderer = TimedRenderer(project) if timed else MessageRenderer(project)
    simulation = CountingSimulation(project, [workflow], samples, START, START + horizon, [workflow],
                                    keep_timeline=False, renderer=renderer, on_message=on_message)
    result = simulation.run()
    return simulation, result


class Floor:
    """Bare Jinja2: a plain Environment over templates/, each template compiled once, rendered with plain dicts."""

    def __init__(self, project, recorder: Recorder, samples: Samples) -> None:
        templates_dir = project.templates_dir
        sources = {}
        for path in templates_dir.rglob("*"):
            if path.is_file():
                front, _, body = split_front_matter(path.read_text(encoding="utf-8"))
                sources[path.relative_to(templates_dir).as_posix()] = (front, body)
        self.env = jinja2.Environment(
            loader=jinja2.DictLoader({name: body for name, (_, body) in sources.items()}),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
            keep_trailing_newline=True)
        import yaml

        # per kind: the templates to render for one message of that kind
        self.plans: list[list[jinja2.Template]] = [[] for _ in recorder.kinds]
        self.subject_lines: list[str | None] = [None] * len(recorder.kinds)
        for (channel, template, subject), kind in recorder.kinds.items():
            plan = self.plans[kind]
            if channel == "sms":
                plan.append(self.env.get_template(template + ".sms.txt"))
                continue
            name = template + ".email.html"
            front = yaml.safe_load(sources[name][0])
            plan.append(self.env.from_string(front["subject"]))
            plan.append(self.env.get_template(name))
            if template + TEXT_PART in sources:
                plan.append(self.env.get_template(template + TEXT_PART))
            self.subject_lines[kind] = subject  # reminder-1's subject is vars.subject_line
        declared = project.contact_fields
        by_contact = {}
        for event in samples.events:
            if event.name == "cart_abandoned":
                by_contact[event.contact] = {**event.properties, "name": event.name, "at": event.at, "id": event.id,
                                             "contact": event.contact}
        # contexts built before the clock starts: the floor is the renders alone
        self.contexts = []
        for contact in samples.contacts:
            values = {name: None for name in declared}
            values.update({"score": 0, "tags": [], "lists": [], "email_consent": False, "sms_consent": False})
            values.update(contact.fields)
            values["id"] = contact.id
            self.contexts.append({"contact": values, "event": by_contact[contact.id], "now": START,
                                  "unsubscribe_url": f"https://lumio.example/unsubscribe/{contact.id}.signature"})
        self.recorder = recorder

    def run(self) -> int:
        """Every message's renders, in the simulation's order. Returns the number of renders."""
        plans, lines, contexts = self.plans, self.subject_lines, self.contexts
        renders = 0
        for kind, index in zip(self.recorder.kind_of, self.recorder.contact_of, strict=True):
            names = dict(contexts[index])
            names["vars"] = {"coupon": "CART10-0000001", "subject_line": lines[kind]}
            for template in plans[kind]:
                template.render(names)
            renders += len(plans[kind])
        return renders


# --------------------------------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------------------------------

def machine() -> dict:
    return describe(jinja2=jinja2.__version__)


class GcTimer:
    """Time spent in the cyclic garbage collector while enabled, by generation."""

    def __init__(self) -> None:
        self.total = 0.0
        self.by_gen = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self._start = 0.0

    def __call__(self, phase, info) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            spent = time.perf_counter() - self._start
            self.total += spent
            self.by_gen[info["generation"]] += spent
            self.counts[info["generation"]] += 1

    def __enter__(self):
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self)


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mb() -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of this process's memory, from /proc (Linux; empty elsewhere).

    Unlike ru_maxrss, VmHWM belongs to the address space: a child started from a bigger parent does not inherit
    the parent's peak, and it can be reset (reset_peak_rss) to measure one phase.
    """
    figures = {}
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    figures[name] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return figures


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: `echo 5 > /proc/self/clear_refs`)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def fmt_mb(size: float) -> str:
    return f"{size / 2**20:,.1f} MiB"


def check_funnel(result, workflow_id: str) -> list[str]:
    funnel = result.funnels[workflow_id]
    problems = []
    if funnel.failed:
        problems.append(f"{funnel.failed} enrollment(s) failed")
    if not funnel.entered:
        problems.append("nobody entered the workflow")
    return problems


def deep_size(roots, seen: set[int]) -> int:
    """Bytes of everything reachable from `roots` (containers, dataclass instances) not already in `seen`."""
    total = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, type(sys), type(deep_size))):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif hasattr(obj, "__dict__"):
            stack.append(vars(obj))
        elif hasattr(obj, "__slots__"):
            stack.extend(getattr(obj, name) for name in obj.__slots__ if hasattr(obj, name))
    return total


def held_structures(simulation, samples: Samples) -> list[list]:
    """What a finished simulation still holds, by structure, inputs (the samples) excluded."""
    seen: set[int] = set()
    deep_size([samples.events, [contact.fields for contact in samples.contacts], samples.coupons], seen)
    ports = simulation.ports
    contacts = list(ports.contacts.by_id.values())
    roots = [
        ("enrollments held (in flight; ended ones only when the timeline is kept)", [ports.enrollments.by_id]),
        ("histories ((workflow, contact) -> enrollments, ended ones as their entry time)",
         [ports.enrollments.by_contact]),
        ("Simulation.reached (funnel: contacts seen per step)", [simulation.reached]),
        ("in flight (contact -> enrollment ids)", [ports.enrollments.in_flight]),
        ("ContactState.messages (a SentMessage per message within the caps' window)",
         [contact.messages for contact in contacts]),
        ("ContactState.events (the lists, + events the run added)", [contact.events for contact in contacts]),
        ("the queue (left past the horizon)", [simulation.driver.queue.entries]),
        ("coupon pools (a copy)", [ports.answers.coupons]),
        ("timers (inactivity, segments)", [ports.timers.inactive, ports.timers.segment]),
    ]
    return [[label, deep_size(objects, seen)] for label, objects in roots]


def memory_child(args) -> int:
    """In a fresh process, one simulation: its peak memory (tracemalloc, with --_trace; ru_maxrss either way)
    and what it still holds when it ends."""
    horizon = parse_duration(args.horizon)
    every = parse_duration(args.every) if args.every else None
    project, workflow = load_inputs()
    samples, info = make_samples(args.contacts, args.seed, coupon_pools(workflow), every, horizon)
    messages = [0]

    def count(_message) -> None:
        messages[0] += 1

    gc.collect()
    rss_before = rss_mb().get("VmRSS", 0.0)
    reset = reset_peak_rss()
    if args.trace:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
    start = time.perf_counter()
    simulation, result = simulate(project, workflow, samples, horizon, count, timed=False)
    spent = time.perf_counter() - start
    rss_after = rss_mb().get("VmHWM", 0.0) if reset else 0.0
    figures = {}
    if args.trace:
        peak = tracemalloc.get_traced_memory()[1]
        gc.collect()
        figures = {"peak": peak - base, "held": tracemalloc.get_traced_memory()[0] - base,
                   "tracemalloc_overhead": tracemalloc.get_tracemalloc_memory()}
        tracemalloc.stop()
    funnel = result.funnels[workflow.id]
    print(json.dumps({
        "contacts": args.contacts, "horizon": args.horizon, "every": args.every, "trace": args.trace,
        "carts": info["carts"], "seconds": spent, "entries": simulation.entries, "messages": messages[0],
        "timeline_kept": len(simulation.timeline), "messages_kept": len(simulation.messages),
        "enrollments": funnel.entered, "entered": funnel.entered,
        "enrollments_held": len(simulation.ports.enrollments.by_id),
        "still_active": sum(1 for enrollment in simulation.ports.enrollments.by_id.values() if not enrollment.ended),
        "rss_before_mb": rss_before, "rss_mb": rss_after, **figures,
        "structures": held_structures(simulation, samples),
        "sent_messages_held": sum(len(contact.messages) for contact in simulation.ports.contacts.by_id.values()),
        "events_held": sum(len(contact.events) for contact in simulation.ports.contacts.by_id.values()),
    }))
    return 0


def run_memory_children(contacts: int, seed: int, runs: list[tuple[str, str | None, bool]]) -> list[dict]:
    """One fresh child process per (horizon, every, traced), all started together (memory is per process;
    nothing is compared by time here)."""
    children = []
    for horizon, every, traced in runs:
        command = [sys.executable, __file__, "--_memory-child", "--contacts", str(contacts), "--horizon", horizon,
                   "--seed", str(seed)]
        if every:
            command += ["--_every", every]
        if traced:
            command.append("--_trace")
        children.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    results = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"bench_simulate: memory child failed (exit {child.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


# functions whose cumulative time says where the simulation's time goes: label, file suffix, function names
PROFILE_GROUPS = [
    ("simulation, total (Simulation.run)", "mauto/simulate/run.py", ("run",)),
    ("  MessageRenderer.render (all of a message)", "mauto/messages.py", ("render",)),
    ("    Environment.from_string (compiling template strings)", "jinja2/environment.py",
     ("from_string",)),
    ("    Template.render (file templates and template strings)", "jinja2/environment.py", ("render",)),
    ("    Environment.get_template (per render: cache lookup)", "jinja2/environment.py", ("get_template",)),
    ("    html_to_text (emails without a .email.txt)", "mauto/messages.py", ("html_to_text",)),
    ("    unsubscribe_token (HMAC-SHA256)", "mauto/messages.py", ("unsubscribe_token",)),
    ("    Event.from_dict (the trigger event, per message)", "mauto/engine/records.py", ("from_dict",)),
    ("  Engine.enroll / advance / deliver / resume (the interpreter)", "mauto/engine/interpreter.py",
     ("enroll", "advance", "deliver", "resume")),
    ("  Engine.admits (trigger where + audience)", "mauto/engine/interpreter.py", ("admits",)),
    ("    Engine.scope (a Scope per step, per event, per admission)", "mauto/engine/interpreter.py", ("scope",)),
    ("      ContactState.record (every declared field, per scope)", "mauto/engine/records.py", ("record",)),
    ("    Engine._allowed (quiet hours, send days, caps)", "mauto/engine/interpreter.py", ("_allowed",)),
    ("  Simulation.record (funnel counts)", "mauto/simulate/run.py", ("record",)),
    ("  heapq push + pop (the virtual clock's queue)", "~",
     ("<built-in method _heapq.heappush>", "<built-in method _heapq.heappop>")),
    ("  datetime.fromisoformat (state keeps ISO strings)", "~", ("<built-in method fromisoformat>",)),
    ("  datetime.isoformat", "~", ("<method 'isoformat' of 'datetime.datetime' objects>",)),
]


def profile_run(project, workflow, samples: Samples, horizon: timedelta, top: int = 15) -> tuple[str, str, str]:
    profiler = cProfile.Profile()
    profiler.enable()
    simulate(project, workflow, samples, horizon, timed=False)
    profiler.disable()
    stats = pstats.Stats(profiler)
    entries = stats.stats.items()  # type: ignore[attr-defined]
    mauto_dir = str(ROOT / "mauto")

    def where(filename: str) -> str:
        shown = filename.replace(mauto_dir + os.sep, "mauto/")
        if "site-packages" in shown:
            shown = shown.split("site-packages" + os.sep, 1)[1]
        return shown

    def table(rows, header):
        lines = [header]
        for (filename, line, function), (_cc, nc, tt, ct, _) in rows:
            lines.append(f"  {ct:8.3f} {tt:8.3f} {nc:>9}  {where(filename)}:{line}({function})")
        return "\n".join(lines)

    ours = [item for item in entries if item[0][0].startswith(mauto_dir)]
    by_cum = sorted(ours, key=lambda item: item[1][3], reverse=True)[:top]
    by_own = sorted(entries, key=lambda item: item[1][2], reverse=True)[:top]
    head = "   cumtime  tottime     calls  function"
    total = max((ct for (filename, _, function), (_, _, _, ct, _) in entries
                 if filename.endswith("mauto/simulate/run.py") and function == "run"), default=0.0) or 1.0
    lines = ["where the time goes (cProfile cumulative times, inflated by its overhead; share of Simulation.run)",
             "   cumtime  share     calls"]
    for label, suffix, functions in PROFILE_GROUPS:
        found = [(nc, ct) for (filename, _, name), (_, nc, _, ct, _) in entries
                 if name in functions and (filename == suffix or where(filename).endswith(suffix))]
        calls = sum(nc for nc, _ in found)
        spent = sum(ct for _, ct in found)
        lines.append(f"  {spent:8.3f} {100 * spent / total:5.1f}% {calls:>9}  {label}")
    groups = "\n".join(lines)
    title = f"top {top} mauto functions by cumulative time"
    return (groups, table(by_cum, title + "\n" + head),
            table(by_own, f"top {top} functions anywhere by own time (tottime)\n" + head))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000, help="contacts simulated (default 100000)")
    parser.add_argument("--horizon", default="30d", help="how long the simulation runs (default 30d)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the generated contacts (default 7)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="timed simulation runs, each followed by 3 bare runs (default 1)")
    parser.add_argument("--memory-contacts", type=int, default=20_000,
                        help="contacts for the memory-vs-horizon runs (default 20000)")
    parser.add_argument("--memory-horizons", default="30d,365d", help="horizons compared (default 30d,365d: a "
                        "month against a year; with --memory-every, the year again with a cart every 31 days)")
    parser.add_argument("--profile-contacts", type=int, default=2_000, help="contacts in the profiled run")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory-vs-horizon runs")
    parser.add_argument("--no-trace", action="store_true",
                        help="memory runs without tracemalloc only (RSS and what is held; much faster)")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--memory-every", default="31d",
                        help="also run the longest horizon with a cart abandoned again every so often, so contacts "
                             "re-enter (default 31d; '' to skip)")
    parser.add_argument("--_memory-child", dest="memory_child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_trace", dest="trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_every", dest="every", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        return memory_child(args)
    return _bench(args)


def _bench(args) -> int:
    print("mauto simulate benchmark")
    for key, value in machine().items():
        print(f"  {key:<10} {value}")
    horizon = parse_duration(args.horizon)

    start = time.perf_counter()
    project, workflow = load_inputs()
    pools = coupon_pools(workflow)
    samples, info = make_samples(args.contacts, args.seed, pools)
    zones = ", ".join(f"{name} {100 * number / args.contacts:.0f}%" for name, number in info["zones"].most_common())
    print(f"\nworkflow: {WORKFLOW} (project {ROOT.name}/mauto.yaml); start {START.isoformat()} (a Monday), "
          f"horizon {args.horizon}")
    print(f"samples: {args.contacts:,} contacts (all with email consent; {info['sms']:,} with a phone and SMS "
          f"consent), zones: {zones}")
    print(f"  {info['events']:,} events: {args.contacts:,} cart_abandoned over the first day, {info['orders']:,} "
          f"order_placed 2h-4d later, {info['clicks']:,} email_clicked on reminder-2 2.5-3.5d later; coupon pools "
          f"{', '.join(pools)} with {info['codes']:,} codes; generated in {time.perf_counter() - start:.1f}s")

    # warm-up: imports, the template cache, lazy caches (a 200-contact run)
    small, _ = make_samples(200, args.seed + 1, pools)
    simulate(project, workflow, small, horizon, timed=False)

    gc.collect()
    rss_before = rss_mb().get("VmRSS", 0.0)
    reset = reset_peak_rss()
    sim_times, bare_times, render_times, gc_times = [], [], [], []
    floor = None
    recorder = None
    simulation = result = None
    for attempt in range(args.repeat):
        run_samples = samples if attempt == 0 else make_samples(args.contacts, args.seed, pools)[0]
        recorder_now = Recorder()
        gc.collect()
        with GcTimer() as gc_timer:
            start = time.perf_counter()
            simulation, result = simulate(project, workflow, run_samples, horizon, recorder_now)
            sim_times.append(time.perf_counter() - start)
        gc_times.append(gc_timer)
        render_times.append(simulation.driver.renderer.spent)
        if attempt == 0:
            rss_sim = rss_mb().get("VmHWM", 0.0) if reset else 0.0
            maxrss = maxrss_mb()
            recorder = recorder_now
            problems = check_funnel(result, workflow.id)
            if problems:
                print("\nFAIL: " + "; ".join(problems), file=sys.stderr)
                return 1
            print(f"\nsimulation {attempt + 1}: {sim_times[-1]:.1f}s (RSS {rss_before:,.0f} MB before, peak "
                  f"{rss_sim:,.0f} MB during it; ru_maxrss {maxrss:,.0f} MB)")
            floor = Floor(project, recorder, samples)
            floor.run()  # warm
            sys.stdout.flush()
        else:
            print(f"simulation {attempt + 1}: {sim_times[-1]:.1f}s")
        for _ in range(3):
            gc.collect()
            start = time.perf_counter()
            renders = floor.run()
            bare_times.append(time.perf_counter() - start)
        print("  bare renders so far: " + ", ".join(f"{t:.2f}" for t in bare_times) + "s")
        sys.stdout.flush()

    funnel = result.funnels[workflow.id]
    messages = len(recorder)
    kinds = Counter()
    for (channel, template, _), kind in recorder.kinds.items():
        kinds[f"{channel} {template}"] += recorder.kind_of.count(kind)
    best_sim, best_bare = min(sim_times), min(bare_times)
    steps = simulation.entries
    ratio = best_sim / best_bare
    render_share = render_times[sim_times.index(best_sim)]
    print(f"\nfunnel: entered {funnel.entered:,}, sent {dict(funnel.sent)}, postponed {funnel.postponed:,} "
          f"(quiet hours, Sundays), converted {funnel.converted:,} (goal: order placed), exited {funnel.exited:,}, "
          f"completed {funnel.completed:,}, "
          f"failed {funnel.failed}")
    print("messages rendered: " + ", ".join(f"{name} {number:,}" for name, number in kinds.most_common())
          + f"; {messages:,} in all")
    print(f"keep_timeline=False: {len(simulation.timeline)} timeline entries and {len(simulation.messages)} messages "
          f"kept; still held: {len(simulation.ports.enrollments.by_id):,} enrollments, "
          f"{sum(len(c.messages) for c in simulation.ports.contacts.by_id.values()):,} SentMessage records, "
          f"{sum(len(c.events) for c in simulation.ports.contacts.by_id.values()):,} events on the contacts")

    print(f"\nbest of {len(sim_times)} simulation run(s) and of {len(bare_times)} bare runs (time.perf_counter, "
          "gc enabled)")
    print(f"  contacts                       {args.contacts:>12,}")
    print(f"  contact-steps (entries)        {steps:>12,}   {steps / args.contacts:.1f} per contact")
    print(f"  messages rendered              {messages:>12,}   bare Jinja2 renders for them: {renders:,}")
    print(f"  simulation                     {best_sim:>11.2f}s   {steps / best_sim:10,.0f} steps/s  "
          f"{args.contacts / best_sim:8,.0f} contacts/s  {messages / best_sim:8,.0f} messages/s   runs: "
          + ", ".join(f"{t:.2f}" for t in sim_times))
    print(f"    of which MessageRenderer.render {render_share:8.2f}s ({100 * render_share / best_sim:.0f}%), "
          f"the rest (engine, queue, funnels) {best_sim - render_share:.2f}s")
    collector = gc_times[sim_times.index(best_sim)]
    print(f"    the cyclic garbage collector    {collector.total:8.2f}s ({100 * collector.total / best_sim:.0f}%; "
          f"collections gen0/1/2: {'/'.join(map(str, collector.counts))}, "
          f"{'/'.join(f'{t:.2f}' for t in collector.by_gen)}s)")
    print(f"  bare renders (the floor)       {best_bare:>11.2f}s   {renders / best_bare:10,.0f} renders/s "
          f"{messages / best_bare:8,.0f} messages/s   runs: " + ", ".join(f"{t:.2f}" for t in bare_times))
    pairs = [sim / min(bare_times[3 * index:3 * index + 3]) for index, sim in enumerate(sim_times)]
    print(f"  ratio simulation / bare        {ratio:>11.1f}x   best/best; each run against the best of its own 3 "
          "bare runs: " + ", ".join(f"{pair:.1f}x" for pair in pairs))
    print(f"  aim <= 3x: {'MET' if ratio <= 3 else 'NOT MET'}; rendering alone is {render_share / best_bare:.1f}x the "
          f"floor, the rest alone {(best_sim - render_share) / best_bare:.1f}x")
    print(f"  peak RSS during the simulation {rss_sim:>9,.0f} MB   (VmHWM reset just before it; {rss_before:,.0f} MB "
          f"resident before it: Python, mauto, the samples; growth {rss_sim - rss_before:+,.0f} MB)")
    print(f"  ru_maxrss                      {maxrss:>9,.0f} MB   (the process's peak after the first simulation)")
    sys.stdout.flush()

    if not args.no_memory:
        horizons = [item.strip() for item in args.memory_horizons.split(",") if item.strip()]
        longest = max(horizons, key=parse_duration)
        plain_runs = [(horizon, None, False) for horizon in horizons]
        if args.memory_every:
            plain_runs.append((longest, args.memory_every, False))
        traced_runs = [] if args.no_trace else [(horizon, None, True) for horizon in horizons]
        print(f"\nmemory vs horizon: {args.memory_contacts:,} contacts, keep_timeline=False, one fresh process per "
              "run; tracemalloc (4-5x slower; the traced runs first, side by side) started after the samples are "
              "built, so its peak is the simulation's own; peak RSS (VmHWM, reset before the simulation) from runs "
              "without tracemalloc")
        children = run_memory_children(args.memory_contacts, args.seed, traced_runs)
        children += run_memory_children(args.memory_contacts, args.seed, plain_runs)
        traced = {child["horizon"]: child for child in children if child["trace"]}
        plain = {(child["horizon"], child["every"]): child for child in children if not child["trace"]}
        print("  horizon                 carts   entries  messages  active at end  tracemalloc peak  held at end  "
              "RSS before -> peak")
        for (run_horizon, every), child in plain.items():
            traced_child = traced.get(run_horizon) if not every else None
            peak = fmt_mb(traced_child["peak"]) if traced_child else "-"
            held = fmt_mb(traced_child["held"]) if traced_child else "-"
            label = run_horizon + (f", a cart every {every}" if every else "")
            print(f"  {label:<22} {child['carts']:>6,} {child['entries']:>9,} {child['messages']:>9,} "
                  f"{child['still_active']:>14,}  {peak:>16}  {held:>11}  {child['rss_before_mb']:,.0f} -> "
                  f"{child['rss_mb']:,.0f} MB (+{child['rss_mb'] - child['rss_before_mb']:,.0f})")
        for child in children:
            if child["timeline_kept"] or child["messages_kept"]:
                print(f"  WARNING: {child['horizon']}: keep_timeline=False still kept {child['timeline_kept']} "
                      f"entries and {child['messages_kept']} messages")
        if traced:
            overheads = ", ".join(f"{fmt_mb(child['tracemalloc_overhead'])} ({child['seconds']:.0f}s)"
                                  for child in traced.values())
            print(f"  tracemalloc's own memory and time in the traced runs: {overheads}")
        print("  still held when the simulation ends (deep sizes, the samples excluded):")
        header = "".join(f"{(h + (' every ' + e if e else '')):>23}" for h, e in plain)
        print(f"    {'':<58}{header}")
        labels = [label for label, _ in next(iter(plain.values()))["structures"]]
        for row, label in enumerate(labels):
            sizes = [(child["structures"][row][1], child["contacts"]) for child in plain.values()]
            print(f"    {label:<58}" + "".join(f"{fmt_mb(size):>12} {size / contacts:>6,.0f} B/c"
                                               for size, contacts in sizes))
        sums = [(sum(size for _, size in child["structures"]), child["enrollments"]) for child in plain.values()]
        totals = "".join(f"{fmt_mb(size):>12} {size / enrollments:>6,.0f} B/e" for size, enrollments in sums)
        print(f"    {'total (B/e: bytes per enrollment)':<58}{totals}")
        sys.stdout.flush()

    if not args.no_profile:
        small, _ = make_samples(args.profile_contacts, args.seed, pools)
        groups, ours, anywhere = profile_run(project, workflow, small, horizon)
        print(f"\ncProfile of a {args.profile_contacts:,}-contact run\n" + groups + "\n\n" + ours + "\n\n" + anywhere)
    return 0


if __name__ == "__main__":
    sys.exit(main())
