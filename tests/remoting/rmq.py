#!/usr/bin/env python3
"""rmq.py - command-line driver around the real Apache RocketMQ C++ client (PyPI rocketmq==0.4.4).

Integration tests written in Rust spawn this script (with the venv made by
scripts/remoting-venv.sh) and parse its stdout: every stdout line is exactly one JSON object,
everything else (diagnostics, tracebacks) goes to stderr.

    rmq.py produce --topic T --count N [--mode sync|oneway|batch|orderly] ...
    rmq.py consume --topic T [--orderly] [--broadcast] [--count N] [--idle-exit-s S] ...

Run `rmq.py produce --help` / `rmq.py consume --help` for every option.

Output lines
------------
produce, one line per send call:
    {"i":i,"status":"OK","msg_id":"..","offset":n,"t_ms":epoch_ms,"latency_ms":x}
    {"i":i,"error":"ProducerSendSyncFailed: ..","t_ms":..,"latency_ms":..}     (and goes on)
  status is the SendStatus name; msg_id is the client-made UNIQ_KEY (32 hex digits, what the
  consumer sees as "id"), not the broker's offsetMsgId, and "" for batches; offset is the
  queue offset (of the first message for a batch); t_ms is when the call returned.
  batch mode: one line per send_batch call, "i" = index of its first message, "n" = its size;
  oneway mode: "status":"ONEWAY", msg_id/offset null (the client gets no answer);
  orderly mode: also "arg" = i % --sharding-key-count (the queue is arg % queue count).
  At the end: {"summary":true,"sent":..,"errors":..,"p50_ms":..,"p99_ms":..,"max_ms":..,
  "msgs_per_s":..,"longest_gap_ms":..,...} where sent/errors count messages (not calls), the
  latency figures are over successful calls, and longest_gap_ms is the longest time between
  two consecutive successful acknowledgements (null with fewer than two).
consume, one line per delivery (also for deliveries this driver fails on purpose):
    {"id":..,"topic":..,"tags":..,"keys":..,"body":..,"queue_id":..,"queue_offset":..,
     "reconsume_times":..,"props":{..},"result":"CONSUME_SUCCESS"|"RECONSUME_LATER",...,"t_ms":..}
  "body" is the UTF-8 text, or null plus "body_b64" when it is not UTF-8; "delivery" counts the
  deliveries of that body so far (1 = first); also commit_log_offset, born_ts, store_ts. The
  topic of a redelivery from %RETRY%<group> is the original one (props.RETRY_TOPIC shows it).
  At the end, after shutdown() returned (so offsets are committed):
    {"summary":true,"received":..,"acked":..,"reconsume_later":..,"distinct":..,
     "distinct_ids":..,"acked_ids":..,"reason":"count"|"idle"|"max"|"signal:SIGTERM"|..}
  received/acked/reconsume_later count deliveries, distinct counts bodies, distinct_ids /
  acked_ids count message ids (UNIQ_KEY, kept across retries); --count N waits for
  acked_ids >= N, so redelivered duplicates do not end the run early.
Both: {"event":"started",...} once start() returned (carries "home", the C++ log location), and
{"event":"error",...} for a fatal error before the summary. Parsers should dispatch on the keys
"summary" / "event" and treat any other line as a record.

Exit codes: 0 done, 1 fatal error (e.g. start() raised), 2 usage, 3 the watchdog fired (a
single client call blocked longer than --op-timeout-s; the summary is still printed).

HOME
----
The C++ client writes its log to $HOME/logs/rocketmq-cpp/<pid>_rocketmq-cpp.log.0 and a
broadcasting consumer keeps its offsets in $HOME/.rocketmq_offsets/<clientId>/<group>/. If the
environment variable RMQ_HOME is set, every run gets a fresh HOME = mktemp -d under $RMQ_HOME
(kept afterwards, so the log can be read; its path is in the "started" line). --home DIR sets
HOME to exactly DIR instead (e.g. for a broadcasting consumer that must resume its offsets).
HOME is set before the library is loaded.

rocketmq 0.4.4 API used (rocketmq/client.py, rocketmq/ffi.py)
-------------------------------------------------------------
Producer(group_id, timeout=None, compress_level=None, max_message_size=None)
    .set_namesrv_addr(addr) .start() .shutdown()
    .send_sync(msg) -> SendResult(status: SendStatus, msg_id: str, offset: int)
    .send_oneway(msg) -> None
    .send_batch([msg, ...]) -> SendResult          (C++ DefaultMQProducer::send(vector))
    .send_orderly(msg, arg: int, retry_times=3, queue_selector=hashing_queue_selector)
        -> SendResult; the default selector picks queue arg % queue_count.
Message(topic).set_keys/.set_tags/.set_body/.set_property(k, v)/.set_delay_time_level(n)
PushConsumer(group_id, orderly=False, message_model=MessageModel.CLUSTERING)
    .set_namesrv_addr(addr) .set_thread_count(n) .set_message_batch_max_size(n) .start()
    .shutdown() and .subscribe(topic, callback, expression='*') - not used, see below.
RecvMessage(handle): .id .topic (str), .tags .keys .body (bytes), .queue_id .queue_offset
    .reconsume_times .commit_log_offset .born_timestamp .store_timestamp, .get_property(name)
    -> bytes (b'' when absent).
ffi: dll.Subscribe(handle, topic, expr), _CConsumeStatus.{CONSUME_SUCCESS=0,RECONSUME_LATER=1},
    MessageModel.{BROADCASTING=0,CLUSTERING=1}, dll.Set{Producer,PushConsumer}LogLevel, _CLogLevel.

Limitations found in 0.4.4 / C++ 1.2.3
--------------------------------------
* PushConsumer.subscribe() ignores the callback's return value (always CONSUME_SUCCESS) and,
  when the callback raises, re-raises out of the ctypes callback, so the int that C++ sees is
  undefined (ctypes leaves the return slot unwritten). This driver therefore calls
  dll.Subscribe itself and registers its own callback through PushConsumer._register_callback
  (private, but fixed by the pin), returning RECONSUME_LATER explicitly to request redelivery.
* The concurrent push consumer hands the whole pull result (up to 32 messages, fixed) to one
  C++ consumeMessage() call, which calls the callback per message and stops at the first
  RECONSUME_LATER; then ALL messages of that pull are sent back: the ones already acknowledged
  are redelivered (duplicates) and the ones after it are retried without ever reaching the
  callback. set_message_batch_max_size only affects the orderly consumer. So --fail-first-n
  gives exactly N+1 deliveries per body only when each pull returns one message (consumer
  running before a paced producer); otherwise expect extra deliveries.
* RECONSUME_LATER means: clustering, concurrent -> CONSUMER_SEND_MSG_BACK (delay level 0, the
  broker picks 3 + reconsumeTimes) and redelivery from %RETRY%<group>; the C++ client rewrites
  the topic of such messages back to the original (RETRY_TOPIC property), and the offset
  advances even when the send-back fails. Orderly -> re-delivered locally after ~100 ms, no
  %RETRY% topic, reconsume_times not increased, forever. Broadcasting -> dropped (logged).
* Orderly push consumption exists (PushConsumer(orderly=True) -> RegisterMessageCallbackOrderly,
  LOCK_BATCH_MQ per queue). Orderly send exists only with a queue-selector arg
  (SendMessageOrderly); the sharding-key API (SendMessageOrderlyByShardingKey) is not in 1.2.3.
* A new consumer group starts at CONSUME_FROM_LAST_OFFSET (set by CreatePushConsumer, no API to
  change it): what a clustering consumer sees first depends on the broker's answer to
  QUERY_CONSUMER_OFFSET (a 4.x broker says 0 while offset 0 is still stored, else 22 and the
  client starts at GET_MAX_OFFSET). A broadcasting consumer with a fresh HOME always starts at
  the max offset: it only sees messages sent after it started.
* PushConsumer.start() itself fetches the routes (%RETRY%<group> and the topic), heartbeats,
  and runs the first rebalance including the initial offset look-ups (doRebalance is called
  synchronously by rebalanceImmediately); only pulling is asynchronous. So with a reachable
  cluster, messages sent after the "started" line are seen by a new group. An unreachable
  NameServer does not make start() fail: it returns in ms when the port is refused, after
  ~10 s when connections hang, and the consumer keeps retrying in the background.
* Bodies go through NUL-terminated C strings both ways (SetMessageBody, GetMessageBody): a body
  with a NUL byte is cut there. This driver only sends text bodies.
* The C++ client catches send_batch / send_oneway failures without recording their message, so
  their error text is whatever the calling thread's last recorded error was.
* send_sync retries any failure internally (5 attempts, each with its own --timeout-ms, the
  next one preferring another broker group) before raising. --timeout-ms does not bound route
  look-ups (fixed 5 s each, several per call): against a NameServer that accepts but never
  answers, one send blocks ~60 s, hence the --op-timeout-s watchdog. A refused NameServer port
  fails in milliseconds ("No route info of this topic").
* Producer.start() makes no network calls and never fails for an unreachable NameServer.
"""

import argparse
import base64
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
import traceback

# Properties printed under "props" when present (names as on the wire, see consts.py).
KNOWN_PROPS = (
    "UNIQ_KEY",
    "RETRY_TOPIC",
    "ORIGIN_MESSAGE_ID",
    "REAL_TOPIC",
    "REAL_QID",
    "RECONSUME_TIME",
    "MAX_RECONSUME_TIMES",
    "DELAY",
    "WAIT",
    "TRAN_MSG",
    "PGROUP",
    "MIN_OFFSET",
    "MAX_OFFSET",
)

LOG_LEVELS = ("fatal", "error", "warn", "info", "debug", "trace")

# Exit code when the watchdog fires.
EXIT_WATCHDOG = 3

_out_lock = threading.Lock()
# Set when the reader of stdout went away; the main loops then stop as if signalled.
_stdout_gone = threading.Event()


def now_ms():
    return int(time.time() * 1000)


def emit(obj):
    """Writes one JSON object as one stdout line. Safe to call from C++ callback threads."""
    line = json.dumps(obj, separators=(",", ":"))
    with _out_lock:
        if _stdout_gone.is_set():
            return
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            _stdout_gone.set()
            # Later writes (and the interpreter's final flush) go nowhere instead of raising.
            sys.stdout = open(os.devnull, "w")


def diag(text):
    with _out_lock:
        sys.stderr.write("rmq: %s\n" % text)
        sys.stderr.flush()


def describe(exc):
    text = str(exc)
    if not text:
        # send_oneway / send_batch failures carry no text (see the docstring).
        text = "(no error text from the C++ client; see its log under $HOME/logs/rocketmq-cpp)"
    return "%s: %s" % (type(exc).__name__, text)


def setup_home(args):
    """Points HOME at a per-run directory before librocketmq.so is loaded; returns it."""
    if args.home:
        os.makedirs(args.home, exist_ok=True)
        home = os.path.abspath(args.home)
    elif os.environ.get("RMQ_HOME"):
        base = os.environ["RMQ_HOME"]
        os.makedirs(base, exist_ok=True)
        home = tempfile.mkdtemp(prefix="%s-%d-" % (args.cmd, os.getpid()), dir=base)
    else:
        return os.environ.get("HOME")
    os.environ["HOME"] = home
    return home


class StopFlag:
    """Set by SIGTERM/SIGINT (or a closed stdout); the main loop polls it between client calls."""

    def __init__(self):
        self.signal = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, _frame):
        self.signal = signal.Signals(signum).name

    def __bool__(self):
        return self.signal is not None or _stdout_gone.is_set()

    def reason(self):
        return "signal:" + self.signal if self.signal else "stdout-closed"

    def sleep(self, seconds):
        """Sleeps up to `seconds`, returning early once a stop was requested."""
        deadline = time.monotonic() + seconds
        while not self:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))


class Watchdog:
    """Ends the process if one client call blocks longer than timeout_s (0 = never).

    The C++ calls hold no Python lock (ctypes releases the GIL), so this thread keeps running
    while the main thread is stuck inside librocketmq.so.
    """

    def __init__(self, timeout_s, on_fire):
        self.timeout_s = timeout_s
        self.on_fire = on_fire
        self._op = None  # (description, monotonic start)
        if timeout_s > 0:
            threading.Thread(target=self._run, name="watchdog", daemon=True).start()

    def begin(self, what):
        self._op = (what, time.monotonic())

    def end(self):
        self._op = None

    def _run(self):
        while True:
            time.sleep(0.2)
            op = self._op
            if op is not None and time.monotonic() - op[1] > self.timeout_s:
                try:
                    self.on_fire(op[0], time.monotonic() - op[1])
                finally:
                    os._exit(EXIT_WATCHDOG)


def set_credentials(client, args):
    """Signs every request with RocketMQ's ACL signature when --access-key is given."""
    if args.access_key:
        client.set_session_credentials(args.access_key, args.secret_key or "", "ALIYUN")


def set_log_level(setter, handle, name):
    from rocketmq.ffi import _CLogLevel
    from rocketmq.exceptions import ffi_check

    ffi_check(setter(handle, _CLogLevel[name.upper()]))


def rnd(value):
    """Rounds to 3 decimals, keeping None."""
    return None if value is None else round(value, 3)


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


# ---------------------------------------------------------------------------------------------
# produce


class ProduceStats:
    def __init__(self, mode):
        self.mode = mode
        self.lock = threading.Lock()
        self.sent = 0  # messages acknowledged
        self.errors = 0  # messages whose send call raised
        self.calls = 0
        self.latencies = []  # ms, successful calls only
        self.last_ack = None  # monotonic time of the last successful call's return
        self.longest_gap_ms = None
        self.first_start = None
        self.last_end = None
        self.summary_printed = False

    def record(self, n, started, ended, ok):
        with self.lock:
            self.calls += 1
            if self.first_start is None:
                self.first_start = started
            self.last_end = ended
            if not ok:
                self.errors += n
                return
            self.sent += n
            self.latencies.append((ended - started) * 1000.0)
            if self.last_ack is not None:
                gap = (ended - self.last_ack) * 1000.0
                if self.longest_gap_ms is None or gap > self.longest_gap_ms:
                    self.longest_gap_ms = gap
            self.last_ack = ended

    def summary(self, reason, **extra):
        with self.lock:
            if self.summary_printed:
                return
            self.summary_printed = True
            lat = sorted(self.latencies)
            elapsed = None
            if self.first_start is not None:
                elapsed = self.last_end - self.first_start
            obj = {
                "summary": True,
                "mode": self.mode,
                "sent": self.sent,
                "errors": self.errors,
                "calls": self.calls,
                "p50_ms": rnd(percentile(lat, 50)),
                "p99_ms": rnd(percentile(lat, 99)),
                "max_ms": rnd(lat[-1] if lat else None),
                "msgs_per_s": rnd(self.sent / elapsed if elapsed else None),
                "longest_gap_ms": rnd(self.longest_gap_ms),
                "elapsed_ms": rnd(None if elapsed is None else elapsed * 1000.0),
                "reason": reason,
            }
        obj.update(extra)
        emit(obj)


def build_message(args, i):
    from rocketmq.client import Message

    msg = Message(args.topic)
    if args.tag:
        msg.set_tags(args.tag)
    msg.set_keys("%s%d" % (args.key_prefix, i))
    body = ("%s%d" % (args.body_prefix, i)).encode("utf-8")
    if args.size is not None and len(body) < args.size:
        body += b"x" * (args.size - len(body))
    msg.set_body(body)
    for name, value in args.property:
        msg.set_property(name, value)
    if args.delay_level:
        msg.set_delay_time_level(args.delay_level)
    return msg


def cmd_produce(args):
    from rocketmq.client import Producer

    stop = StopFlag()
    stats = ProduceStats(args.mode)
    current = {"i": None, "n": 1}  # the call in flight, for the watchdog

    def on_watchdog(what, elapsed):
        if what.startswith("send") and current["i"] is not None:
            record = {"i": current["i"]}
            if args.mode == "batch":
                record["n"] = current["n"]
            record.update(error="watchdog: %s blocked for %.1f s" % (what, elapsed),
                          t_ms=now_ms(), latency_ms=round(elapsed * 1000.0, 3))
            emit(record)
            with stats.lock:
                stats.errors += current["n"]
        diag("watchdog: %s blocked for %.1f s, exiting" % (what, elapsed))
        stats.summary("watchdog", error="%s blocked for %.1f s" % (what, elapsed))

    watchdog = Watchdog(args.op_timeout_s, on_watchdog)

    producer = Producer(args.group, timeout=args.timeout_ms,
                        max_message_size=args.max_message_size)
    producer.set_namesrv_addr(args.namesrv)
    set_credentials(producer, args)
    if args.log_level:
        from rocketmq.ffi import dll

        set_log_level(dll.SetProducerLogLevel, producer._handle, args.log_level)
    watchdog.begin("start")
    t0 = time.monotonic()
    try:
        producer.start()
    except Exception as e:  # noqa: BLE001 - reported, then fatal
        emit({"event": "error", "error": "start: " + describe(e), "t_ms": now_ms()})
        stats.summary("start-failed", error=describe(e))
        return 1
    watchdog.end()
    emit({"event": "started", "role": "producer", "pid": os.getpid(), "home": args.home_dir,
          "start_ms": round((time.monotonic() - t0) * 1000.0, 3), "t_ms": now_ms()})

    deadline = None if args.duration_s is None else time.monotonic() + args.duration_s
    step = args.batch_size if args.mode == "batch" else 1
    i = 0
    reason = "count"
    while True:
        if stop:
            reason = stop.reason()
            break
        if args.count is not None and i >= args.count:
            reason = "count"
            break
        if deadline is not None and time.monotonic() >= deadline:
            reason = "duration"
            break
        n = step if args.count is None else min(step, args.count - i)
        record = {"i": i}
        if args.mode == "batch":
            record["n"] = n
        msgs = [build_message(args, j) for j in range(i, i + n)]
        if args.mode == "orderly":
            record["arg"] = i % args.sharding_key_count
        current["i"], current["n"] = i, n
        started = time.monotonic()
        watchdog.begin("send(%s) i=%d" % (args.mode, i))
        try:
            if args.mode == "sync":
                result = producer.send_sync(msgs[0])
            elif args.mode == "orderly":
                result = producer.send_orderly(msgs[0], record["arg"])
            elif args.mode == "batch":
                result = producer.send_batch(msgs)
            else:
                producer.send_oneway(msgs[0])
                result = None
            ok = True
        except Exception as e:  # noqa: BLE001 - every send failure is reported, then go on
            ok = False
            record["error"] = describe(e)
        ended = time.monotonic()
        watchdog.end()
        current["i"] = None
        stats.record(n, started, ended, ok)
        if ok:
            if result is None:
                record.update(status="ONEWAY", msg_id=None, offset=None)
            else:
                record.update(status=result.status.name, msg_id=result.msg_id,
                              offset=result.offset)
        record["t_ms"] = now_ms()
        record["latency_ms"] = round((ended - started) * 1000.0, 3)
        emit(record)
        i += n
        if args.interval_ms:
            # Fixed pace without catch-up: the next send starts interval_ms after this one
            # started, or at once if this one took longer.
            stop.sleep(args.interval_ms / 1000.0 - (time.monotonic() - started))

    stats.summary(reason)
    watchdog.begin("shutdown")
    producer.shutdown()
    watchdog.end()
    return 0


# ---------------------------------------------------------------------------------------------
# consume


def text_or_none(value):
    if value is None:
        return None
    return value.decode("utf-8", errors="replace")


class ConsumeState:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.received = 0
        self.acked = 0
        self.reconsume_later = 0
        self.deliveries = {}  # body bytes -> deliveries so far
        self.ids = set()  # message ids (UNIQ_KEY, kept by retries) seen
        self.acked_ids = set()  # ... and acknowledged; --count compares against this
        self.first_msg = None  # monotonic
        self.last_msg = None
        self.body_re = re.compile(args.fail_body_regex) if args.fail_body_regex else None

    def should_fail(self, body_text, seen_before):
        """Whether this delivery is answered RECONSUME_LATER (see --fail-first-n / -regex)."""
        a = self.args
        if a.fail_first_n is None and self.body_re is None:
            return False
        if self.body_re is not None and not self.body_re.search(body_text):
            return False
        return a.fail_first_n is None or seen_before < a.fail_first_n


def cmd_consume(args):
    from rocketmq.client import PushConsumer, RecvMessage
    from rocketmq.exceptions import ffi_check
    from rocketmq.ffi import MessageModel, _CConsumeStatus, dll

    stop = StopFlag()
    state = ConsumeState(args)
    show_props = KNOWN_PROPS + tuple(p for p in args.show_prop if p not in KNOWN_PROPS)

    def summary(reason, **extra):
        with state.lock:
            obj = {"summary": True, "received": state.received, "acked": state.acked,
                   "reconsume_later": state.reconsume_later,
                   "distinct": len(state.deliveries), "distinct_ids": len(state.ids),
                   "acked_ids": len(state.acked_ids), "reason": reason}
        obj.update(extra)
        emit(obj)

    def on_watchdog(what, elapsed):
        diag("watchdog: %s blocked for %.1f s, exiting" % (what, elapsed))
        summary("watchdog", error="%s blocked for %.1f s" % (what, elapsed))

    watchdog = Watchdog(args.op_timeout_s, on_watchdog)

    def on_message(_consumer, handle):
        # Runs on a C++ consume thread. Never lets an exception escape into ctypes.
        try:
            msg = RecvMessage(handle)
            body = msg.body or b""
            try:
                body_text = body.decode("utf-8")
            except UnicodeDecodeError:
                body_text = None
            props = {}
            for name in show_props:
                value = msg.get_property(name)
                if value:
                    props[name] = text_or_none(value)
            record = {
                "id": msg.id,
                "topic": msg.topic,
                "tags": text_or_none(msg.tags),
                "keys": text_or_none(msg.keys),
                "body": body_text,
                "queue_id": msg.queue_id,
                "queue_offset": msg.queue_offset,
                "commit_log_offset": msg.commit_log_offset,
                "reconsume_times": msg.reconsume_times,
                "born_ts": msg.born_timestamp,
                "store_ts": msg.store_timestamp,
                "props": props,
            }
            if body_text is None:
                record["body_b64"] = base64.b64encode(body).decode("ascii")
            with state.lock:
                seen = state.deliveries.get(body, 0)
                state.deliveries[body] = seen + 1
                fail = state.should_fail(body_text if body_text is not None else "", seen)
                state.received += 1
                state.ids.add(record["id"])
                if fail:
                    state.reconsume_later += 1
                else:
                    state.acked += 1
                    state.acked_ids.add(record["id"])
                t = time.monotonic()
                if state.first_msg is None:
                    state.first_msg = t
                state.last_msg = t
            record["delivery"] = seen + 1
            record["result"] = "RECONSUME_LATER" if fail else "CONSUME_SUCCESS"
            record["t_ms"] = now_ms()
            emit(record)
            if fail:
                return _CConsumeStatus.RECONSUME_LATER.value
            return _CConsumeStatus.CONSUME_SUCCESS.value
        except BaseException:  # noqa: BLE001 - a crash here must not reach C++
            diag("consume callback failed:\n" + traceback.format_exc())
            return _CConsumeStatus.RECONSUME_LATER.value

    model = MessageModel.BROADCASTING if args.broadcast else MessageModel.CLUSTERING
    consumer = PushConsumer(args.group, orderly=args.orderly, message_model=model)
    consumer.set_namesrv_addr(args.namesrv)
    set_credentials(consumer, args)
    if args.threads:
        consumer.set_thread_count(args.threads)
    # One message per callback (the C++ default too): a failed delivery then only affects
    # itself, never other messages of the same batch.
    consumer.set_message_batch_max_size(1)
    if args.log_level:
        set_log_level(dll.SetPushConsumerLogLevel, consumer._handle, args.log_level)
    # Instead of consumer.subscribe(), which cannot return RECONSUME_LATER (see docstring).
    ffi_check(dll.Subscribe(consumer._handle, args.topic.encode("utf-8"),
                            args.expression.encode("utf-8")))
    consumer._register_callback(on_message)

    watchdog.begin("start")
    t0 = time.monotonic()
    try:
        consumer.start()
    except Exception as e:  # noqa: BLE001 - reported, then fatal
        emit({"event": "error", "error": "start: " + describe(e), "t_ms": now_ms()})
        summary("start-failed", error=describe(e))
        return 1
    watchdog.end()
    started = time.monotonic()
    emit({"event": "started", "role": "consumer", "pid": os.getpid(), "home": args.home_dir,
          "orderly": args.orderly, "broadcast": args.broadcast,
          "start_ms": round((started - t0) * 1000.0, 3), "t_ms": now_ms()})

    while True:
        if stop:
            reason = stop.reason()
            break
        now = time.monotonic()
        with state.lock:
            acked, last = len(state.acked_ids), state.last_msg
        if args.count is not None and acked >= args.count:
            reason = "count"
            break
        if args.idle_exit_s is not None and last is not None and now - last >= args.idle_exit_s:
            reason = "idle"
            break
        if args.max_s is not None and now - started >= args.max_s:
            reason = "max"
            break
        time.sleep(0.05)

    # Waits for callbacks in flight (they still print and count), persists offsets, unregisters.
    watchdog.begin("shutdown")
    t0 = time.monotonic()
    consumer.shutdown()
    watchdog.end()
    summary(reason, shutdown_ms=round((time.monotonic() - t0) * 1000.0, 3))
    return 0


# ---------------------------------------------------------------------------------------------
# command line


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def non_negative_float(text):
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def name_value(text):
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected name=value, got %r" % text)
    return name, value


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="rmq.py",
        description="Drive the RocketMQ C++ client (PyPI rocketmq==0.4.4); JSON lines on stdout.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--namesrv", default="127.0.0.1:9876", help="NameServer address(es), "
                        "';'-separated (default %(default)s)")
    common.add_argument("--topic", required=True)
    common.add_argument("--access-key", help="sign requests as this user (RocketMQ ACL)")
    common.add_argument("--secret-key", help="the user's secret")
    common.add_argument("--home", help="set HOME to exactly this directory (default: a fresh "
                        "directory under $RMQ_HOME when that is set, else unchanged)")
    common.add_argument("--log-level", choices=LOG_LEVELS,
                        help="C++ client log level (its default is info)")
    common.add_argument("--op-timeout-s", type=non_negative_float, default=120.0,
                        help="exit with code 3 when one client call (start, a send, "
                        "shutdown) blocks longer than this; 0 = never (default %(default)s)")

    p = sub.add_parser("produce", parents=[common], help="send messages",
                       description="Send messages; one JSON line per send call, then a summary.")
    p.add_argument("--group", default="rmq_py_producer", help="producer group")
    p.add_argument("--count", type=int, help="messages to send (default: unlimited; needs "
                   "--duration-s then)")
    p.add_argument("--duration-s", type=non_negative_float, help="stop after this many seconds")
    p.add_argument("--mode", choices=("sync", "oneway", "batch", "orderly"), default="sync")
    p.add_argument("--batch-size", type=positive_int, default=10,
                   help="messages per send_batch call in batch mode (default %(default)s)")
    p.add_argument("--sharding-key-count", type=positive_int, default=1,
                   help="orderly mode: message i is sent with arg i %% M (default %(default)s)")
    p.add_argument("--tag")
    p.add_argument("--key-prefix", default="k", help="keys are <prefix><i> (default %(default)s)")
    p.add_argument("--body-prefix", default="", help="bodies are <prefix><i>")
    p.add_argument("--size", type=int, help="pad each body with 'x' to this many bytes")
    p.add_argument("--property", type=name_value, action="append", default=[],
                   metavar="NAME=VALUE", help="user property on every message (repeatable)")
    p.add_argument("--delay-level", type=int, help="delay time level (1..18)")
    p.add_argument("--interval-ms", type=non_negative_float, default=0,
                   help="start sends this many ms apart (no catch-up after a slow send)")
    p.add_argument("--timeout-ms", type=positive_int, default=3000,
                   help="the producer's send timeout per attempt (default %(default)s)")
    p.add_argument("--max-message-size", type=positive_int,
                   help="the producer's max message size (C++ default 4 MiB)")

    c = sub.add_parser("consume", parents=[common], help="receive messages (push consumer)",
                       description="Push-consume; one JSON line per delivery, then a summary.")
    c.add_argument("--group", default="rmq_py_consumer", help="consumer group")
    c.add_argument("--expression", default="*", help="tag expression (default %(default)s)")
    c.add_argument("--orderly", action="store_true", help="orderly push consumer")
    c.add_argument("--broadcast", action="store_true", help="BROADCASTING message model")
    c.add_argument("--threads", type=positive_int, help="consume threads (C++ default: cores)")
    c.add_argument("--count", type=int,
                   help="exit once this many distinct messages (by id) were acknowledged")
    c.add_argument("--idle-exit-s", type=non_negative_float,
                   help="exit after this long without a delivery, once one arrived")
    c.add_argument("--max-s", type=non_negative_float, help="exit after this long in any case")
    c.add_argument("--fail-first-n", type=int,
                   help="answer RECONSUME_LATER to the first N deliveries of each distinct "
                   "body (with --fail-body-regex: of each matching body)")
    c.add_argument("--fail-body-regex",
                   help="answer RECONSUME_LATER to deliveries whose body matches (re.search); "
                   "every time unless --fail-first-n limits it")
    c.add_argument("--show-prop", action="append", default=[], metavar="NAME",
                   help="also print this property under props (repeatable)")

    args = parser.parse_args(argv)
    if args.cmd == "produce" and args.count is None and args.duration_s is None:
        parser.error("produce needs --count or --duration-s")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args.home_dir = setup_home(args)
    try:
        if args.cmd == "produce":
            return cmd_produce(args)
        return cmd_consume(args)
    except Exception as e:  # noqa: BLE001 - last resort: say it on stdout too
        diag(traceback.format_exc())
        emit({"event": "error", "error": describe(e), "t_ms": now_ms()})
        return 1


if __name__ == "__main__":
    sys.exit(main())
