#!/usr/bin/env python3
"""Real-client interop: the Apache RocketMQ C++ client (PyPI `rocketmq==0.4.4`, which
bundles librocketmq) against Keel's `mqnamesrv` and `mqbroker` on loopback.

Each test uses its own topic and group. Every message sent carries a unique body, so what
arrives can be matched exactly against what was sent: identical body, keys, tags and user
properties, nothing unsent, FIFO per queue where the producer pinned a queue, nothing
acknowledged lost across a SIGTERM or a `kill -9` under SYNC_FLUSH.

Usage: interop.py <dir with mqnamesrv and mqbroker>. Prints `interop: N passed, M failed`.
KEEL_INTEROP_ONLY=<substring> runs only the matching tests; KEEL_INTEROP_KEEP=1 keeps the
logs and stores; RUST_LOG reaches both servers.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from rocketmq.client import Message, Producer, PullConsumer, PushConsumer, RecvMessage, SendStatus
from rocketmq.ffi import _CConsumeStatus, dll

from host_disk import HOST_DISK_KEYS

# Short delay levels keep retry tests quick; their count (18) is RocketMQ's. Retries use
# levels 3 and up; level 2 (3 s) is the one the delay test sends with.
DELAY_LEVEL_TESTED, DELAY_SECONDS = 2, 3.0
DELAY_LEVELS = " ".join(["1s", "3s"] + ["1s"] * 16)

BIN_DIR = sys.argv[1] if len(sys.argv) > 1 else "target/debug"


class Cluster:
    """A name server and a broker, as separate processes of the built binaries."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="keel-interop-")
        self.namesrv = self._spawn(["mqnamesrv", "-c", self._write("namesrv.properties", "listenPort=0\n")], "namesrv")
        line = self.namesrv.stdout.readline().decode()
        assert line.startswith("The Name Server boot success."), line
        self.namesrv_addr = "127.0.0.1:" + line.strip().rsplit(":", 1)[1]
        self.broker = None
        self.flush = None
        # A broker restarts on its own port: clients keep its address in their routes.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.broker_port = probe.getsockname()[1]

    def _write(self, name, text):
        path = os.path.join(self.root, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def _spawn(self, argv, log_name):
        log = open(os.path.join(self.root, log_name + ".log"), "ab")
        return subprocess.Popen(
            [os.path.join(BIN_DIR, argv[0])] + argv[1:], stdout=subprocess.PIPE, stderr=log
        )

    def start_broker(self, flush="ASYNC_FLUSH"):
        self.flush = flush
        conf = self._write(
            "broker.conf",
            "listenPort=%d\n"
            "haListenPort=0\n"
            "namesrvAddr=%s\n"
            "storePathRootDir=%s\n"
            "flushDiskType=%s\n"
            "mappedFileSizeCommitLog=4194304\n"
            "messageDelayLevel=%s\n"
            % (self.broker_port, self.namesrv_addr, os.path.join(self.root, "store"), flush, DELAY_LEVELS)
            + HOST_DISK_KEYS,
        )
        self.broker = self._spawn(["mqbroker", "-c", conf], "broker")
        line = self.broker.stdout.readline().decode()
        assert "boot success" in line, line
        time.sleep(0.5)  # let it register with the name server

    def stop_broker(self, sig):
        self.broker.send_signal(sig)
        code = self.broker.wait(timeout=30)
        if sig == signal.SIGTERM:
            assert code == 0, "mqbroker exited %s on SIGTERM" % code
            assert not os.path.exists(os.path.join(self.root, "store", "abort")), "abort marker left after SIGTERM"
        self.broker = None

    def restart_broker(self, sig):
        flush = self.flush
        self.stop_broker(sig)
        self.start_broker(flush)

    def close(self):
        for proc in (self.broker, self.namesrv):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if os.environ.get("KEEL_INTEROP_KEEP"):
            print("interop: logs and store kept in %s" % self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def logs(self):
        out = []
        for name in ("namesrv.log", "broker.log"):
            path = os.path.join(self.root, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    out.append("--- %s (tail)\n%s" % (name, f.read()[-3000:].decode(errors="replace")))
        return "\n".join(out)


def producer(cluster, group):
    p = Producer(group)
    p.set_namesrv_addr(cluster.namesrv_addr)
    p.start()
    return p


def message(topic, i, tag="TagA"):
    m = Message(topic)
    m.set_keys("key-%d" % i)
    m.set_tags(tag)
    m.set_property("seq", str(i))
    m.set_body("body-%d" % i)
    return m


def expected(i, tag="TagA"):
    return {"body": b"body-%d" % i, "keys": b"key-%d" % i, "tags": tag.encode(), "seq": str(i).encode()}


def received(msg):
    return {
        "body": msg.body,
        "keys": msg.keys,
        "tags": msg.tags,
        "seq": msg.get_property("seq"),
        "queue": msg.queue_id,
        "offset": msg.queue_offset,
    }


def push_consume(cluster, topic, group, expression, count, timeout=40):
    got = []
    lock = threading.Lock()

    def callback(msg):
        with lock:
            got.append(received(msg))

    c = PushConsumer(group)
    c.set_namesrv_addr(cluster.namesrv_addr)
    c.subscribe(topic, callback, expression)
    c.start()
    deadline = time.time() + timeout
    while time.time() < deadline:
        with lock:
            if len(got) >= count:
                break
        time.sleep(0.2)
    time.sleep(1.0)  # anything extra would arrive now
    c.shutdown()
    return got


def pull_consume(cluster, topic, group, expression="*"):
    c = PullConsumer(group)
    c.set_namesrv_addr(cluster.namesrv_addr)
    c.start()
    got = [received(m) for m in c.pull(topic, expression)]
    c.shutdown()
    return got


def assert_exact(got, sent, what):
    """Every message sent arrives once with identical fields, and nothing else arrives."""
    by_body = {}
    for g in got:
        assert g["body"] not in by_body, "%s: %r delivered twice" % (what, g["body"])
        by_body[g["body"]] = g
    for s in sent:
        g = by_body.pop(s["body"], None)
        assert g is not None, "%s: %r never arrived" % (what, s["body"])
        for field in ("keys", "tags", "seq"):
            assert g[field] == s[field], "%s: %r has %s %r, sent %r" % (what, s["body"], field, g[field], s[field])
    assert not by_body, "%s: unsent messages arrived: %r" % (what, sorted(by_body))


def assert_fifo_per_queue(got, what):
    """Within each queue, offsets rise and sequence numbers rise in arrival order."""
    last = {}
    for g in got:
        queue = g["queue"]
        if queue in last:
            prev_offset, prev_seq = last[queue]
            assert g["offset"] > prev_offset, "%s: queue %d offsets out of order" % (what, queue)
            assert int(g["seq"]) > prev_seq, "%s: queue %d messages out of order" % (what, queue)
        last[queue] = (g["offset"], int(g["seq"]))


def test_sync_sends_push_consumer_tag_expression(cluster):
    topic, tags = "InteropSync", ["TagA", "TagB", "TagC"]
    p = producer(cluster, "pg_sync")
    sent = []
    for i in range(30):
        tag = tags[i % 3]
        result = p.send_sync(message(topic, i, tag))
        assert result.status == SendStatus.OK, result
        sent.append(expected(i, tag))
    p.shutdown()
    got = push_consume(cluster, topic, "cg_sync", "TagA || TagB", 20)
    assert_exact(got, [s for s in sent if s["tags"] != b"TagC"], "push TagA||TagB")


def test_async_and_oneway_sends_pull_consumer(cluster):
    topic = "InteropAsync"
    p = producer(cluster, "pg_async")
    done = threading.Semaphore(0)
    failures = []
    for i in range(10):
        p.send_async(message(topic, i), lambda result: done.release(), lambda e: (failures.append(e), done.release()))
    for _ in range(10):
        assert done.acquire(timeout=20), "async send callback never came"
    assert not failures, failures
    for i in range(10, 20):
        p.send_oneway(message(topic, i))
    time.sleep(1.0)
    p.shutdown()
    got = pull_consume(cluster, topic, "cg_async")
    assert_exact(got, [expected(i) for i in range(20)], "async and oneway")


def test_orderly_sends_stay_fifo_per_queue(cluster):
    topic = "InteropOrderly"
    p = producer(cluster, "pg_orderly")
    for i in range(30):
        result = p.send_orderly(message(topic, i), i % 3)
        assert result.status == SendStatus.OK, result
    p.shutdown()
    got = pull_consume(cluster, topic, "cg_orderly")
    assert_exact(got, [expected(i) for i in range(30)], "orderly")
    assert_fifo_per_queue(got, "orderly")
    queues = {}
    for g in got:
        queues.setdefault(int(g["seq"]) % 3, set()).add(g["queue"])
    assert all(len(q) == 1 for q in queues.values()), "a selector key spread over queues: %r" % queues


def test_batch_send(cluster):
    topic = "InteropBatch"
    p = producer(cluster, "pg_batch")
    result = p.send_batch([message(topic, i) for i in range(10)])
    assert result.status == SendStatus.OK, result
    p.shutdown()
    got = pull_consume(cluster, topic, "cg_batch")
    assert_exact(got, [expected(i) for i in range(10)], "batch")
    assert_fifo_per_queue(got, "batch")


def restart_keeps_everything(cluster, sig, topic):
    cluster.restart_broker(signal.SIGTERM)  # a SYNC_FLUSH broker on the same store
    p = producer(cluster, "pg_" + topic)
    for i in range(40):
        result = p.send_sync(message(topic, i))
        assert result.status == SendStatus.OK, result
    p.shutdown()
    cluster.restart_broker(sig)
    got = pull_consume(cluster, topic, "cg_" + topic)
    assert_exact(got, [expected(i) for i in range(40)], "after restart")


def test_sigterm_restart_loses_nothing(cluster):
    cluster.flush = "SYNC_FLUSH"
    restart_keeps_everything(cluster, signal.SIGTERM, "InteropSigterm")


def test_kill9_restart_loses_nothing_acknowledged_under_sync_flush(cluster):
    cluster.flush = "SYNC_FLUSH"
    restart_keeps_everything(cluster, signal.SIGKILL, "InteropKill9")


class Consumer:
    """A push consumer of the real client whose listener may fail messages: `decide(msg)`
    returns True to consume, False for RECONSUME_LATER (the wrapper's own subscribe turns a
    raised exception into success, so the listener is registered directly)."""

    def __init__(self, cluster, topic, group, instance, decide=lambda msg: True, orderly=False):
        self.got = []
        self.lock = threading.Lock()
        self.consumer = PushConsumer(group, orderly=orderly)
        self.consumer.set_namesrv_addr(cluster.namesrv_addr)
        self.consumer.set_instance_name(instance)

        def on_message(_consumer, handle):
            msg = RecvMessage(handle)
            record = received(msg)
            record["reconsume_times"] = msg.reconsume_times
            record["at"] = time.time()
            record["delay"] = msg.get_property("DELAY")
            ok = decide(msg)
            record["ok"] = ok
            with self.lock:
                self.got.append(record)
            status = _CConsumeStatus.CONSUME_SUCCESS if ok else _CConsumeStatus.RECONSUME_LATER
            return status.value

        assert dll.Subscribe(self.consumer._handle, topic.encode(), b"*") == 0
        self.consumer._register_callback(on_message)
        self.consumer.start()

    def snapshot(self):
        with self.lock:
            return list(self.got)

    def stop(self):
        self.consumer.shutdown()


def wait_for(what, predicate, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def send_numbered(cluster, topic, first, count):
    p = producer(cluster, "pg_" + topic)
    for i in range(first, first + count):
        result = p.send_sync(message(topic, i))
        assert result.status == SendStatus.OK, result
    p.shutdown()
    return [expected(i) for i in range(first, first + count)]


def test_two_push_consumers_split_the_queues_and_one_takes_over(cluster):
    topic, group = "InteropRebalance", "cg_rebalance"
    send_numbered(cluster, topic, 0, 8)  # creates the topic (4 queues)
    a = Consumer(cluster, topic, group, "consumer-a")
    b = Consumer(cluster, topic, group, "consumer-b")
    try:
        # Let both register and rebalance, then send: each queue must have one owner.
        time.sleep(8)
        sent = send_numbered(cluster, topic, 100, 40)
        bodies = {s["body"] for s in sent}
        fresh = lambda c: [g for g in c.snapshot() if g["body"] in bodies]
        wait_for("40 messages split between two consumers", lambda: len(fresh(a)) + len(fresh(b)) >= 40)
        queues_a, queues_b = {g["queue"] for g in fresh(a)}, {g["queue"] for g in fresh(b)}
        assert queues_a and queues_b, "one consumer got nothing: a %r b %r" % (queues_a, queues_b)
        assert not queues_a & queues_b, "a queue consumed by both: a %r b %r" % (queues_a, queues_b)
        assert_exact(fresh(a) + fresh(b), sent, "split")

        # a stops: b takes over every queue.
        a.stop()
        a = None
        time.sleep(3)
        sent = send_numbered(cluster, topic, 200, 40)
        bodies = {s["body"] for s in sent}
        wait_for("b to take over every queue", lambda: len(fresh(b)) >= 40)
        assert {g["queue"] for g in fresh(b)} == {0, 1, 2, 3}, "b did not take over every queue"
        assert_exact(fresh(b), sent, "take-over")
    finally:
        for c in (a, b):
            if c is not None:
                c.stop()


def test_orderly_push_consumer_keeps_fifo_per_queue(cluster):
    topic, group = "InteropOrderlyPush", "cg_orderly_push"
    p = producer(cluster, "pg_orderly_push")
    for i in range(60):
        result = p.send_orderly(message(topic, i), i % 4)
        assert result.status == SendStatus.OK, result
    p.shutdown()
    c = Consumer(cluster, topic, group, "orderly-1", orderly=True)
    try:
        wait_for("60 orderly messages", lambda: len(c.snapshot()) >= 60)
        time.sleep(1)
        got = c.snapshot()
    finally:
        c.stop()
    assert_exact(got, [expected(i) for i in range(60)], "orderly push")
    assert_fifo_per_queue(got, "orderly push")


def test_reconsume_later_redelivers_with_rising_reconsume_times(cluster):
    topic, group = "InteropRetry", "cg_retry"
    sent = send_numbered(cluster, topic, 0, 3)
    # Fail every delivery of body-1 until its third retry; consume the rest at once.
    c = Consumer(cluster, topic, group, "retry-1", decide=lambda msg: msg.body != b"body-1" or msg.reconsume_times >= 3)
    try:
        wait_for("body-1 consumed on its third retry", lambda: any(g["body"] == b"body-1" and g["ok"] for g in c.snapshot()))
        time.sleep(2)
        got = c.snapshot()
    finally:
        c.stop()
    tries = [g["reconsume_times"] for g in got if g["body"] == b"body-1"]
    assert tries == [0, 1, 2, 3], "body-1 deliveries had reconsume times %r" % tries
    others = [g for g in got if g["body"] != b"body-1"]
    assert_exact(others, [s for s in sent if s["body"] != b"body-1"], "the messages that succeeded")


def test_a_rust_library_consumer_and_a_cpp_consumer_share_one_group(cluster):
    """Keel's client library (mqbench's consumer) and the C++ client in one group: they must
    compute the same allocation, so no queue is consumed twice and none is orphaned."""
    topic, group = "InteropMixed", "cg_mixed"
    send_numbered(cluster, topic, 0, 4)  # creates the topic
    rust = subprocess.Popen(
        [os.path.join(BIN_DIR, "mqbench"), "consumer", "-n", cluster.namesrv_addr, "-t", topic,
         "-g", group, "-w", "2", "--duration", "20", "--print"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    cpp = Consumer(cluster, topic, group, "cpp-consumer")
    try:
        time.sleep(8)  # both register; rebalancing settles
        sent = send_numbered(cluster, topic, 100, 40)
        bodies = {s["body"] for s in sent}
        out, _ = rust.communicate(timeout=90)
        rust_got = []
        for line in out.splitlines():
            if line.startswith(b"consumed "):
                _, queue, _offset, body = line.split(b" ", 3)
                if body in bodies:
                    rust_got.append((int(queue), body))
        cpp_got = [(g["queue"], g["body"]) for g in cpp.snapshot() if g["body"] in bodies]
        rust_queues, cpp_queues = {q for q, _ in rust_got}, {q for q, _ in cpp_got}
        assert rust_queues and cpp_queues, "one side got nothing: rust %r, C++ %r" % (rust_queues, cpp_queues)
        assert not rust_queues & cpp_queues, "a queue consumed by both: rust %r, C++ %r" % (rust_queues, cpp_queues)
        assert rust_queues | cpp_queues == {0, 1, 2, 3}, "a queue orphaned: rust %r, C++ %r" % (rust_queues, cpp_queues)
        consumed = sorted(b for _, b in rust_got + cpp_got)
        assert consumed == sorted(bodies), "not every message exactly once: %d consumed of %d" % (len(consumed), len(bodies))
    finally:
        cpp.stop()
        if rust.poll() is None:
            rust.kill()


def test_a_delay_level_message_arrives_no_earlier_than_its_delay(cluster):
    """The C++ producer sends with a delay level; the C++ consumer gets each message once,
    no earlier than the level's delay after the send began, and not much later."""
    topic, group = "InteropDelay", "cg_delay"
    send_numbered(cluster, topic, 0, 1)  # creates the topic
    c = Consumer(cluster, topic, group, "delay-1")
    try:
        wait_for("the consumer to start", lambda: len(c.snapshot()) >= 1)
        p = producer(cluster, "pg_delay")
        started = {}
        for i in range(1, 6):
            m = message(topic, i)
            m.set_delay_time_level(DELAY_LEVEL_TESTED)
            started[b"body-%d" % i] = time.time()
            result = p.send_sync(m)
            assert result.status == SendStatus.OK, result
        p.shutdown()
        wait_for("5 delayed messages", lambda: len(c.snapshot()) >= 6)
        time.sleep(1)
        got = [g for g in c.snapshot() if g["body"] in started]
    finally:
        c.stop()
    assert_exact(got, [expected(i) for i in range(1, 6)], "delayed")
    for g in got:
        waited = g["at"] - started[g["body"]]
        assert waited >= DELAY_SECONDS, "%r arrived %.3f s after its send, before the %.0f s delay" % (
            g["body"], waited, DELAY_SECONDS)
        assert waited < DELAY_SECONDS + 15, "%r arrived %.1f s late" % (g["body"], waited - DELAY_SECONDS)
        assert g["delay"] == str(DELAY_LEVEL_TESTED).encode(), "DELAY property %r" % g["delay"]


def remoting_call(addr, code, ext=None, body=b""):
    """One request over RocketMQ's remoting protocol (JSON header), its reply as (header, body)."""
    import json
    import struct

    host, port = addr.rsplit(":", 1)
    header = json.dumps(
        {"code": code, "flag": 0, "language": "PYTHON", "opaque": 1, "serializeTypeCurrentRPC": "JSON",
         "version": 1, "extFields": ext or {}}
    ).encode()
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(struct.pack(">ii", 4 + len(header) + len(body), len(header)) + header + body)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
            chunk = conn.recv(65536)
            assert chunk, "connection closed"
            data += chunk
    length, header_len = struct.unpack(">ii", data[:8])
    return json.loads(data[8 : 8 + header_len]), data[8 + header_len : 4 + length]


def test_controller_failover_after_kill9_of_a_sync_master(_cluster):
    """A controller, a name server and two brokers of one set in controller mode, SYNC_MASTER
    with allAckInSyncStateSet. The C++ producer sends; the master is killed with kill -9;
    the controller elects the in-sync slave; the same producer's sends resume against it;
    a C++ push consumer then receives every message that was acknowledged."""
    import json

    root = tempfile.mkdtemp(prefix="keel-interop-failover-")
    procs = []

    def spawn(argv, name):
        log = open(os.path.join(root, name + ".log"), "ab")
        proc = subprocess.Popen([os.path.join(BIN_DIR, argv[0])] + argv[1:], stdout=subprocess.PIPE, stderr=log)
        procs.append(proc)
        line = proc.stdout.readline().decode()
        assert "boot success" in line, line
        return proc, line

    def write(name, text):
        path = os.path.join(root, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def free_port():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    try:
        _, line = spawn(["mqcontroller", "-c", write("c.properties", "listenPort=0\nscanNotActiveBrokerInterval=1000\n")], "controller")
        controller = "127.0.0.1:" + line.strip().rsplit(":", 1)[1]
        _, line = spawn(["mqnamesrv", "-c", write("n.properties", "listenPort=0\n")], "namesrv")
        namesrv = "127.0.0.1:" + line.strip().rsplit(":", 1)[1]
        brokers = {}
        for broker_id in (1, 2):
            port = free_port()
            conf = write(
                "broker-%d.conf" % broker_id,
                "brokerName=broker-a\nbrokerId=%d\nbrokerRole=SYNC_MASTER\nenableControllerMode=true\n"
                "controllerAddr=%s\nallAckInSyncStateSet=true\nnamesrvAddr=%s\nlistenPort=%d\nhaListenPort=%d\n"
                "storePathRootDir=%s\nflushDiskType=SYNC_FLUSH\nmappedFileSizeCommitLog=4194304\n"
                % (broker_id, controller, namesrv, port, free_port(), os.path.join(root, "store-%d" % broker_id))
                + HOST_DISK_KEYS,
            )
            brokers[broker_id] = (spawn(["mqbroker", "-c", conf], "broker-%d" % broker_id)[0], "127.0.0.1:%d" % port)
            if broker_id == 1:
                wait_for("broker 1 elected", lambda: json.loads(remoting_call(brokers[1][1], 907)[1])["master"], 20)

        def sync_state():
            header, body = remoting_call(controller, 1006, body=b'["broker-a"]')
            return json.loads(body)["replicasInfoTable"]["broker-a"]

        wait_for("broker 2 in the SyncStateSet", lambda: any(r["brokerId"] == 2 for r in sync_state()["inSyncReplicas"]), 30)

        topic = "InteropFailover"
        p = Producer("pg_failover")
        p.set_namesrv_addr(namesrv)
        p.start()
        acked = []
        for i in range(30):
            result = p.send_sync(message(topic, i))
            assert result.status == SendStatus.OK, result
            acked.append(expected(i))
        # The slave copies the topic's config with the master's metadata (every 10 s).
        time.sleep(11)
        brokers[1][0].send_signal(signal.SIGKILL)
        brokers[1][0].wait()
        killed = time.time()
        resumed = None
        i = 30
        while time.time() - killed < 90:
            try:
                result = p.send_sync(message(topic, i))
                if result.status == SendStatus.OK:
                    acked.append(expected(i))
                    i += 1
                    resumed = resumed or time.time() - killed
                    if i >= 40:
                        break
            except Exception:
                time.sleep(0.5)
        p.shutdown()
        assert resumed is not None, "sends never resumed after the master was killed"
        print("     failover: the C++ producer's sends resumed %.1f s after kill -9" % resumed, flush=True)
        state = sync_state()
        assert state["masterBrokerId"] == 2 and state["masterEpoch"] == 2, state

        class Namesrv:
            namesrv_addr = namesrv

        got = push_consume(Namesrv(), topic, "cg_failover", "*", len(acked), timeout=60)
        got_bodies = {g["body"] for g in got}
        missing = [a["body"] for a in acked if a["body"] not in got_bodies]
        assert not missing, "acknowledged but never consumed: %r" % missing[:10]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if not os.environ.get("KEEL_INTEROP_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print("interop: failover logs kept in %s" % root)


TESTS = [
    test_sync_sends_push_consumer_tag_expression,
    test_async_and_oneway_sends_pull_consumer,
    test_orderly_sends_stay_fifo_per_queue,
    test_batch_send,
    test_sigterm_restart_loses_nothing,
    test_kill9_restart_loses_nothing_acknowledged_under_sync_flush,
    test_two_push_consumers_split_the_queues_and_one_takes_over,
    test_orderly_push_consumer_keeps_fifo_per_queue,
    test_reconsume_later_redelivers_with_rising_reconsume_times,
    test_a_rust_library_consumer_and_a_cpp_consumer_share_one_group,
    test_a_delay_level_message_arrives_no_earlier_than_its_delay,
    test_controller_failover_after_kill9_of_a_sync_master,
]


def main():
    passed, failed = 0, 0
    cluster = Cluster()
    try:
        cluster.start_broker("ASYNC_FLUSH")
        only = os.environ.get("KEEL_INTEROP_ONLY", "")
        for test in TESTS:
            if only not in test.__name__:
                continue
            started = time.time()
            try:
                test(cluster)
                passed += 1
                print("ok   %s (%.1fs)" % (test.__name__, time.time() - started), flush=True)
            except Exception:
                failed += 1
                print("FAIL %s\n%s" % (test.__name__, traceback.format_exc()), flush=True)
                print(cluster.logs(), flush=True)
                if cluster.broker is None:
                    cluster.start_broker(cluster.flush or "ASYNC_FLUSH")
    finally:
        cluster.close()
    print("interop: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
