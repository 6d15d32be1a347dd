"""Sending: the outbox handed to the channels, once per message, and what a person decides by hand."""
from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from mauto.channels import base as channels
from mauto.channels.pace import Pace, pace_of
from mauto.daemon.report import TickReport
from mauto.driver.sqlite import Log
from mauto.engine.interpreter import refusal
from mauto.errors import MautoError, printable
from mauto.messages import dated
from mauto.store import runtime
from mauto.store.runtime import failure_reason as _reason
from mauto.store.sqlite import Store, stamp
from mauto.store.sqlite import store_failure as _store_failure

SEND_BATCH = 200  # messages read from the outbox at a time
# A provider's pushback (421, 429) is not a failed attempt while the channel is moving: a message may be turned
# away this many times in one run, and the channel's messages this many times in a row for each of its connections
# with nothing accepted in between. Past that the provider is refusing, not pacing: the pushback counts as a failed
# attempt (the usual backoff, parked after MAX_ATTEMPTS) and the channel's other messages wait for the next run.
MAX_FREE_PUSHBACKS = 3
PUSHBACK_WAIT = 60.0  # seconds a run waits out a provider's pause; a longer one is waited out by a later run


def _refusal(db: Any, contact_id: str, channel: str, store: Store) -> str | None:
    """Why a marketing message may not go now (the contact changed since it was queued), or None.

    What the store knows at the hand-off wins: consent, the suppression list, and withdrawals received but not
    yet processed (an `unsubscribed` stamped after the moment the message was decided for)."""
    info = runtime.address_of(db, contact_id)
    if info is None:
        return "the contact was erased"
    address = info["email"] if channel == "email" else info["phone"]
    suppressed = bool(address) and store.is_suppressed(address, channel)
    found = refusal(channel, address, info[f"{channel}_consent"], suppressed)
    if found:
        return found
    if channel in runtime.withdrawals_pending(db, contact_id):
        return f"the contact withdrew {'email' if channel == 'email' else 'SMS'} consent (an event not yet processed)"
    return None


class _NotPending(Exception):
    """Raised by the hand-off mark when the message is no longer pending: the transport stops before DATA."""


@dataclass
class _Job:
    """One message on its way: its row, what goes out, and its pushbacks in this run."""

    row: dict[str, Any]
    outgoing: channels.Outgoing | None = None  # made at dispatch, right after the consent check
    ticket: int | None = None  # the pace's, for its pushback
    pushbacks: int = 0  # times the provider turned it away to slow us down, in this run (not attempts)


@dataclass
class _Outcome:
    """What a hand-off came to, as the connection's thread saw it: the store is written by the main thread."""

    delivery: channels.Delivery | None = None
    error: BaseException | None = None  # what the transport raised
    handed: bool = False  # the hand-off mark was committed
    not_pending: bool = False  # the mark found the message no longer pending: nothing was sent


def _hand_over(transport: channels.Transport, outgoing: channels.Outgoing, handoff: Callable[[], None]) -> _Outcome:
    """`transport.send`, its answer or its exception kept for the main thread. Touches no store."""
    outcome = _Outcome()

    def marked() -> None:
        handoff()
        outcome.handed = True

    try:
        outcome.delivery = transport.send(outgoing, marked)
    except _NotPending:
        outcome.not_pending = True
    except BaseException as error:  # noqa: BLE001 - judged by the main thread (a store failure stops the tick)
        outcome.error = error
    return outcome


class _Connection(threading.Thread):
    """One of a channel's parallel connections: hands the jobs it is given over its own transport. The hand-off
    mark is asked of the main thread (which alone writes the store) and committed before the point of no return;
    the answer goes back to the main thread, which records it."""

    def __init__(self, lane: _Lane, transport: channels.Transport, own: bool, results: queue.Queue) -> None:
        super().__init__(name=f"mauto-{lane.channel}-{len(lane.connections) + 1}", daemon=True)
        self.lane, self.transport, self.own, self.results = lane, transport, own, results
        self.jobs: queue.SimpleQueue[_Job | None] = lane.jobs

    def run(self) -> None:
        try:
            while (job := self.jobs.get()) is not None:
                assert job.outgoing is not None
                outcome = _hand_over(self.transport, job.outgoing, partial(self._handoff, job))
                self.results.put(("done", self.lane, job, outcome))
        finally:
            if self.own:  # a clone; the channel's own transport is closed by the outbox
                with contextlib.suppress(Exception):
                    self.transport.__exit__(None, None, None)

    def _handoff(self, job: _Job) -> None:
        reply: queue.SimpleQueue[bool | BaseException] = queue.SimpleQueue()
        self.results.put(("handoff", self.lane, job, reply))
        answer = reply.get()
        if isinstance(answer, BaseException):
            raise answer
        if not answer:
            raise _NotPending


@dataclass
class _Lane:
    """One channel in this run: its pace, its messages waiting, its connections."""

    channel: str
    pace: Pace
    backlog: deque[_Job] = field(default_factory=deque)
    jobs: queue.SimpleQueue[_Job | None] = field(default_factory=queue.SimpleQueue)
    connections: list[_Connection] = field(default_factory=list)
    idle: int = 1  # connections free for a message (inline: the main thread itself)
    held: str | None = None  # why its messages wait for a later run (unusable, or paused past this run)
    strikes: int = 0  # pushbacks in a row, nothing accepted in between


class _Outbox:
    """One tick's sending: the transports opened so far, the channels found unusable (misconfigured), and each
    channel's lane (its pace, backlog and connections)."""

    def __init__(self, store: Store, now: datetime, transports: dict[str, channels.Transport], log: Log,
                 report: TickReport, stopping: Callable[[], bool] = lambda: False) -> None:
        self.store, self.now, self.at = store, now, stamp(now)
        self.transports, self.log, self.report, self.stopping = transports, log, report, stopping
        self.opened: dict[str, channels.Transport] = {}
        self.unusable: dict[str, str] = {}  # channel -> why: its messages wait for the next tick
        self.started = time.monotonic()  # a Retry-After counts from the answer, which came this long after `now`
        self.lanes: dict[str, _Lane] = {}
        self.results: queue.Queue = queue.Queue()  # from the connections' threads: hand-off marks, answers
        self.threaded = False  # True: every lane sends from threads, the main thread serves the store
        self.busy = 0  # messages being handed over by the threads

    def close(self) -> None:
        for lane in self.lanes.values():
            for _ in lane.connections:
                lane.jobs.put(None)
        while any(connection.is_alive() for lane in self.lanes.values() for connection in lane.connections):
            try:  # a thread waiting for its hand-off mark after a failure: it is refused, nothing goes out
                kind, _, _, reply = self.results.get(timeout=0.1)
            except queue.Empty:
                continue
            if kind == "handoff":
                reply.put(False)
        for transport in self.opened.values():
            with contextlib.suppress(Exception):  # closing a connection that failed already: nothing to tell
                transport.__exit__(None, None, None)

    def transport(self, channel: str) -> channels.Transport | None:
        if channel in self.unusable:
            return None
        transport = self.opened.get(channel)
        if transport is not None:
            return transport
        try:
            if channel not in self.transports:
                raise MautoError(f"no transport for {channel} messages: configure channels.{channel} in mauto.yaml")
            transport = self.opened[channel] = self.transports[channel].__enter__()
        except Exception as error:  # noqa: BLE001 - a channel that cannot open leaves its messages waiting
            if _store_failure(error):
                raise
            self._unusable(channel, _reason(error))
            return None
        return transport

    def _unusable(self, channel: str, why: str) -> None:
        self.unusable[channel] = why
        self.report.errors += 1
        self.report.notes.append(f"{channel} messages were not sent: {why}; they wait in the outbox")
        self.log("error", {"channel": channel, "why": why})

    # --- the lanes ---

    def lane(self, channel: str) -> _Lane:
        lane = self.lanes.get(channel)
        if lane is None:
            given = self.transports.get(channel)
            pace = pace_of(given) if given is not None else Pace()
            lane = self.lanes[channel] = _Lane(channel, pace)
        return lane

    def _connect(self, lane: _Lane, transport: channels.Transport) -> None:
        """The lane's threads, one a connection: the channel's own transport and its clones."""
        if lane.connections:
            return
        lane.connections.append(_Connection(lane, transport, False, self.results))
        for _ in range(lane.pace.connections - 1):
            twin = transport.clone()
            if twin is None:  # a transport that has one connection only
                break
            lane.connections.append(_Connection(lane, twin.__enter__(), True, self.results))
        lane.idle = len(lane.connections)
        for connection in lane.connections:
            connection.start()

    def _due(self, after: int) -> list[dict[str, Any]]:
        """The next due messages past id `after`: on PostgreSQL taken for this worker (a lease: several daemons
        never take the same ones), on SQLite as they are (one tick at a time)."""
        worker = getattr(self.store, "worker", None)
        with self.store.guard():
            if worker is None:
                return runtime.due_messages(self.store.db, self.now, after, SEND_BATCH)
            with self.store.transaction() as db:
                return runtime.claim_messages(db, self.now, after, SEND_BATCH, worker, datetime.now(UTC))

    def run(self, progress: Callable[[int], None] | None) -> None:
        """Every due message, each channel at its pace: read in batches, dispatched when the channel has a token
        and a free connection; in threads when a channel has more than one connection."""
        for transport in self.transports.values():
            pace_of(transport).new_run()
        self.threaded = any(pace_of(transport).connections > 1 for transport in self.transports.values())
        after, exhausted = 0, False
        while True:
            waiting = sum(len(lane.backlog) for lane in self.lanes.values())
            if not exhausted and waiting < SEND_BATCH and not self.stopping():
                batch = self._due(after)
                exhausted = not batch
                for row in batch:
                    after = row["id"]
                    lane = self.lane(row["channel"])
                    if lane.held:  # the channel waits for a later run: its messages stay as they are
                        self._done(progress)
                    else:
                        lane.backlog.append(_Job(row))
                continue
            soonest = self._dispatch(progress)
            if self.stopping():
                for lane in self.lanes.values():
                    lane.backlog.clear()  # untouched: pending for the next tick
                exhausted = True
            if not self.busy and not any(lane.backlog for lane in self.lanes.values()):
                if exhausted:
                    return
                continue
            pause = 0.25 if soonest is None else min(soonest, 0.25)  # short: a stop is heard soon
            if self.busy:
                self._serve(pause, progress)
            elif soonest is not None:
                time.sleep(pause)

    def _dispatch(self, progress: Callable[[int], None] | None) -> float | None:
        """Hand over what each lane can now; the seconds until the soonest lane can again (None: no waiting)."""
        soonest: float | None = None
        for lane in self.lanes.values():
            while lane.backlog and lane.idle > 0 and not lane.held and not self.stopping():
                wait, ticket = lane.pace.try_take()
                if ticket is None:
                    soonest = wait if soonest is None else min(soonest, wait)
                    break
                job = lane.backlog.popleft()
                job.ticket = ticket
                if not self.guarded(job.row, partial(self._prepare, job)):
                    lane.pace.give_back()  # not sent (consent withdrawn, the channel unusable): its turn is free
                    if lane.channel in self.unusable:
                        self._hold(lane, self.unusable[lane.channel], progress)
                    self._done(progress)
                    continue
                if self.threaded:
                    self._connect(lane, self.opened[lane.channel])
                    lane.idle -= 1
                    self.busy += 1
                    lane.jobs.put(job)
                else:
                    transport = self.opened[lane.channel]
                    assert job.outgoing is not None
                    outcome = _hand_over(transport, job.outgoing, partial(self._mark, job.row))
                    self._conclude(lane, job, outcome, progress)
            if lane.held:
                self._hold(lane, lane.held, progress)
        return soonest

    def _serve(self, timeout: float, progress: Callable[[int], None] | None) -> None:
        """Answer the connections' threads: a hand-off mark asked, a hand-off done."""
        try:
            kind, lane, job, payload = self.results.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            if kind == "handoff":
                try:
                    payload.put(self._mark_ok(job.row))
                except BaseException as error:
                    payload.put(error)  # the thread gives up that message (nothing sent); the tick stops
                    raise
            else:
                lane.idle += 1
                self.busy -= 1
                self._conclude(lane, job, payload, progress)
            try:
                kind, lane, job, payload = self.results.get_nowait()
            except queue.Empty:
                return

    def _hold(self, lane: _Lane, why: str, progress: Callable[[int], None] | None) -> None:
        lane.held = why
        for _ in lane.backlog:
            self._done(progress)
        lane.backlog.clear()

    @staticmethod
    def _done(progress: Callable[[int], None] | None) -> None:
        if progress is not None:
            progress(1)

    # --- one message ---

    def guarded(self, row: dict[str, Any], step: Callable[[], Any]) -> Any:
        """Run one step of a message's hand-off; whatever this message's data does, never raise for it (the
        store's own failures aside): a surprise parks it, or makes it `unknown` once handed off."""
        self.decided = False  # set once the message's fate is recorded: nothing after may record it again
        try:
            return step()
        except Exception as error:  # noqa: BLE001 - one message's surprise parks it (never sent blind)
            if _store_failure(error):
                raise
            if self.decided:  # recorded already (sent, say); what failed after is not the message's
                self.report.notes.append(f"message {row['id']}: {_reason(error)}")
                return None
            with self.store.guard():
                status = self.store.db.execute("SELECT status, handoff_at FROM messages WHERE id = ?",
                                               [row["id"]]).fetchone()
            handed = status is not None and status[1] is not None
            verdict = "unknown" if handed else "parked"
            answer = f"could not be sent: {_reason(error)}"
            runtime.record_delivery(self.store, row["id"], verdict, answer, self.at)
            if handed:
                self.report.unknown += 1
            else:
                self.report.parked += 1
            self.log(verdict, {"key": row["key"], "contact": row["contact"], "channel": row["channel"],
                               "answer": answer})
            return None

    def _prepare(self, job: _Job) -> bool:
        """Check the message may go now (consent, at the moment of its hand-off) and that its channel can be used;
        make what goes out. False: it does not go (cancelled, or left pending for the next tick)."""
        row = job.row
        store, at, report, log = self.store, self.at, self.report, self.log
        channel = row["channel"]
        if row["marketing"]:
            try:
                with store.guard():
                    refusal = _refusal(store.db, row["contact"], channel, store)
            except Exception as error:  # noqa: BLE001 - consent that cannot be checked is consent not given
                if _store_failure(error):
                    raise
                refusal = f"consent could not be checked ({_reason(error)})"
            if refusal:
                runtime.record_delivery(store, row["id"], "cancelled", f"not sent: {refusal}", at)
                self.decided = True
                report.cancelled += 1
                log("cancelled", {"key": row["key"], "contact": row["contact"], "why": refusal})
                return False
        if self.transport(channel) is None:
            return False  # the channel cannot be used this tick: the message stays pending, untouched
        body = bytes(row["body"])
        if channel == "email":  # dated when it is handed over, not when it was planned (a late tick)
            body = dated(body, self.now)
        job.outgoing = channels.Outgoing(row["id"], row["key"], channel, row["to_address"] or "", row["sender"],
                                         row["message_id"], body, row["contact"], row["workflow"], row["step"],
                                         row["envelope"], row["ref"])
        return True

    def _mark_ok(self, row: dict[str, Any]) -> bool:
        """The hand-off mark, committed: False when the message is no longer pending (a person dropped it, or it
        was decided, since it was read): then it must not go."""
        return runtime.mark_handoff(self.store, row["id"], self.at)

    def _mark(self, row: dict[str, Any]) -> None:
        if not self._mark_ok(row):
            raise _NotPending

    def _conclude(self, lane: _Lane, job: _Job, outcome: _Outcome, progress: Callable[[int], None] | None) -> None:
        """Record what a hand-off came to (on the main thread); a pushback puts the message back in its lane."""
        if self.guarded(job.row, partial(self._answer, lane, job, outcome)) == "again":
            lane.backlog.appendleft(job)
        else:
            self._done(progress)

    def _answer(self, lane: _Lane, job: _Job, outcome: _Outcome) -> str | None:
        row, channel, handed = job.row, job.row["channel"], outcome.handed
        if outcome.not_pending:
            self.decided = True
            self.log("cancelled", {"key": row["key"], "contact": row["contact"],
                                   "why": "decided meanwhile (outbox drop?); not sent"})
            return None
        delivery = outcome.delivery
        error = outcome.error
        if error is not None:
            if not isinstance(error, Exception) or _store_failure(error):
                raise error
            if isinstance(error, MautoError) and not handed:  # the channel's configuration: all its messages wait
                self._unusable(channel, _reason(error))
                lane.held = self.unusable[channel]
                return None
            delivery = channels.Delivery(channels.UNKNOWN if handed else channels.RETRY, _reason(error))
        assert delivery is not None
        if delivery.pushback and delivery.status == channels.RETRY:
            lane.pace.pushback(job.ticket, delivery.retry_after)
            lane.strikes += 1
            if job.pushbacks < MAX_FREE_PUSHBACKS and \
                    lane.strikes <= MAX_FREE_PUSHBACKS * max(1, len(lane.connections)):
                return self._slowed(lane, job, delivery, handed)
            if not lane.held:
                lane.held = f"the provider keeps turning messages away ({delivery.detail})"
                self.report.notes.append(f"{channel} messages wait for the next run: {lane.held}")
        elif delivery.status == channels.SENT:
            lane.strikes = 0
            lane.pace.success()
        self._record(row, delivery, handed)
        return None

    def _slowed(self, lane: _Lane, job: _Job, delivery: channels.Delivery, handed: bool) -> str | None:
        """The provider turned the message away to slow us down: not a failed attempt. It goes again in this
        run once the channel's pace allows, or, when that is further off than a run waits (a long Retry-After)
        or the run is stopping, in a later run; the channel's other messages then wait too."""
        row = job.row
        wait = lane.pace.wait()
        retry_at = self.now + timedelta(seconds=wait + time.monotonic() - self.started)
        runtime.record_delivery(self.store, row["id"], "pending", delivery.detail, self.at,
                                next_try_at=stamp(retry_at), count_attempt=-1 if handed else False)
        self.decided = True
        answer = _without_address(delivery.detail, row["to_address"])
        facts = {"key": row["key"], "contact": row["contact"], "channel": row["channel"], "answer": answer}
        if wait > PUSHBACK_WAIT or self.stopping():
            self.report.retried += 1
            self.log("retry", {**facts, "next_try_at": retry_at.isoformat(), "pushback": True})
            if not lane.held:
                why = f"the provider asked to slow down ({answer}); the channel waits {wait:.0f}s"
                self.report.notes.append(f"{row['channel']} messages wait for a later run: {why}")
                lane.held = why
            return None
        job.pushbacks += 1
        rate = lane.pace.current
        self.log("slowed", {**facts, "rate": f"{rate:g}/s" if rate is not None else None,
                            "wait": f"{wait:.2f}s"})
        return "again"

    def _record(self, row: dict[str, Any], delivery: channels.Delivery, handed: bool) -> None:
        """The provider's answer, recorded once; then counted and logged."""
        attempts = row["attempts"] + 1
        detail, verdict = delivery.detail, "parked"
        count_attempt, provider_id, next_try_at = not handed, None, None
        extra: dict[str, Any] = {}
        if delivery.status == channels.SENT:
            verdict, provider_id = "sent", delivery.provider_id
        elif delivery.status == channels.RETRY and attempts < channels.MAX_ATTEMPTS:
            delay = channels.backoff(attempts)
            if delivery.retry_after is not None:  # the provider's Retry-After: never earlier than it asked
                delay = max(delay, delivery.retry_after + time.monotonic() - self.started)
            retry_at = self.now + timedelta(seconds=delay)
            verdict, next_try_at = "pending", stamp(retry_at)
            extra = {"attempt": attempts, "next_try_at": retry_at.isoformat()}
        elif delivery.status == channels.UNKNOWN:
            verdict, count_attempt = "unknown", False
        elif delivery.status != channels.PARKED:
            detail = f"gave up after {attempts} attempts: {detail}"
        runtime.record_delivery(self.store, row["id"], verdict, detail, self.at, next_try_at=next_try_at,
                                provider_id=provider_id, count_attempt=count_attempt)
        self.decided = True  # recorded: whatever the log does now, the message is not recorded again
        counted = {"sent": "sent", "pending": "retried", "unknown": "unknown", "parked": "parked"}[verdict]
        setattr(self.report, counted, getattr(self.report, counted) + 1)
        # The contact by id, never by address: the action log goes to files that erasure cannot reach.
        self.log({"pending": "retry"}.get(verdict, verdict), {
            "key": row["key"], "contact": row["contact"], "channel": row["channel"],
            "answer": _without_address(detail, row["to_address"]), **extra})


def _without_address(text: str | None, address: str | None) -> str | None:
    """A provider's answer for the log, the recipient's address in it replaced ("550 <ana@…> rejected")."""
    if not text or not address:
        return text
    from mauto.channels.smtp import idna_address

    # The address as given, lower-cased, as servers quote the envelope (ASCII domain), as reasons quote it
    # (repr, printable).
    forms = {address, address.lower(), repr(address)[1:-1], printable(address)}
    with contextlib.suppress(ValueError):
        forms.add(idna_address(address))
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "<recipient>")
    return text


def send_outbox(store: Store, now: datetime, transports: dict[str, channels.Transport], log: Log,
                report: TickReport, stopping: Callable[[], bool] = lambda: False,
                progress: Callable[[int], None] | None = None) -> None:
    """Hand every due message to its channel, once: the hand-off is recorded before it begins. Each channel at
    its pace (`transport.pace`: its connections and rate, `mauto.channels.pace`)."""
    outbox = _Outbox(store, now, transports, log, report, stopping)
    try:
        outbox.run(progress)
    finally:
        outbox.close()
        worker = getattr(store, "worker", None)
        if worker is not None:  # several workers (PostgreSQL): what this one took and did not send, to the others
            with contextlib.suppress(MautoError), store.guard(), store.transaction() as db:
                runtime.release_claims(db, worker)


def retry_message(store: Store, message_id: int, now: datetime) -> dict[str, Any]:
    """Put a parked or unknown message back in the queue (a person decided it should go): sent by the next tick.

    An `unknown` message may already have been delivered (its hand-off was cut off): retrying it is the person's
    call, never mauto's. A sent or cancelled message cannot be retried."""
    return _decide(store, message_id, now, "pending", "retry asked", "retried", stamp(now))


def drop_message(store: Store, message_id: int, now: datetime) -> dict[str, Any]:
    """Decide not to send a parked, unknown or pending message: it becomes `cancelled`, with who decided."""
    return _decide(store, message_id, now, "cancelled", "dropped by hand", "dropped")


def _decide(store: Store, message_id: int, now: datetime, status: str, what: str, verb: str,
            next_try_at: str | None = None) -> dict[str, Any]:
    with store.transaction() as db:
        row = runtime.message(db, message_id)
        if row is None:
            raise MautoError(f"no message {message_id} in the outbox", store.shown)
        if row["status"] not in ("parked", "unknown", "pending"):
            raise MautoError(f"message {message_id} is {row['status']}: only parked, unknown or pending messages "
                             f"can be {verb}", store.shown)
        runtime.set_message_status(db, message_id, status, f"{what} at {now.isoformat()} "
                                   f"(was {row['status']}: {row['answer'] or '-'})", stamp(now), next_try_at)
    return {**row, "status": status, "was": row["status"]}
