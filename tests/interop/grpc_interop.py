#!/usr/bin/env python3
"""Real 5.x-SDK interop: Apache RocketMQ's official Python client (PyPI
`rocketmq-python-client==5.1.2`, gRPC) against `keel --enable-proxy` on loopback.

Every message sent is read back with Keel's `mqadmin queryMsgById -t <topic> -i <message id>`:
the stored body, tag, keys and user properties must be exactly what the SDK sent. The SDK's
simple and push consumers must receive exactly what was sent, once unless not acknowledged.
The mixed tests pair the SDK with Apache's C++ remoting client (PyPI `rocketmq`, run from its
own venv by remoting_side.py: `KEEL_REMOTING_PYTHON`, default target/interop-venv/bin/python).

Usage: grpc_interop.py <dir with keel and mqadmin>. Prints `interop-grpc: N passed, M failed`.
KEEL_INTEROP_ONLY=<substring> runs only the matching tests; KEEL_INTEROP_KEEP=1 keeps the
log and store.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from rocketmq import (ClientConfiguration, ConsumeResult, Credentials, FilterExpression, Message,
                      MessageListener, Producer, PushConsumer, SimpleConsumer, TransactionChecker,
                      TransactionResolution)

from host_disk import HOST_DISK_KEYS

BIN_DIR = sys.argv[1] if len(sys.argv) > 1 else "target/debug"


class Keel:
    """`keel --enable-proxy` (name server, broker and gRPC endpoint in one process)."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="keel-grpc-interop-")
        conf = os.path.join(self.root, "broker.conf")
        with open(conf, "w") as f:
            # Open transactions are checked back a second after their half message.
            f.write("enableProxy=true\ngrpcServerPort=0\ntransactionTimeOut=1000\ntransactionCheckInterval=1000\n"
                    + HOST_DISK_KEYS)
        self.log = open(os.path.join(self.root, "keel.log"), "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BIN_DIR, "keel"), "-c", conf, "--data-dir", os.path.join(self.root, "data"),
             "--namesrv-port", "0", "--broker-port", "0"],
            stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode()
        assert line.startswith("Keel is up."), line
        self.namesrv = re.search(r"Name server: (\S+) ", line).group(1)
        self.grpc = re.search(r"gRPC at (\S+?);", line).group(1)
        # The certificate Keel made for TLS on the gRPC port (tlsTestModeEnable): the SDK's
        # TLS channels check the server against it, through gRPC's own roots setting.
        self.certificate = os.path.join(self.root, "data", "tls", "grpc-self-signed.pem")
        os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = self.certificate

    def stored(self, topic, message_id):
        """(properties, body) of the message the SDK sent as `message_id`, read by mqadmin."""
        deadline = time.time() + 20
        while True:
            out = subprocess.run(
                [os.path.join(BIN_DIR, "mqadmin"), "queryMsgById", "-n", self.namesrv, "-t", topic, "-i", message_id],
                capture_output=True, text=True)
            if out.returncode == 0:
                break
            assert time.time() < deadline, "mqadmin never found %s: %s" % (message_id, out.stderr)
            time.sleep(0.2)
        fields = dict(re.match(r"(\S[^:]*:)\s+(.*)", line).groups() for line in out.stdout.splitlines() if line.strip())
        props = dict(p.split("=", 1) for p in fields["Properties:"].strip("{}").split(", ") if "=" in p)
        with open(fields["Message Body Path:"], "rb") as f:
            body = f.read()
        return props, body

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if os.environ.get("KEEL_INTEROP_KEEP"):
            print("interop-grpc: log and store kept in %s" % self.root)
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self):
        with open(os.path.join(self.root, "keel.log"), "rb") as f:
            return f.read()[-3000:].decode(errors="replace")


def config(keel):
    return ClientConfiguration(keel.grpc, Credentials(), request_timeout=10)


def message(topic, body, tag="TagA", keys=("order-1",), props=None, group=None, deliver_at=None):
    m = Message()
    m.topic = topic
    m.body = body
    m.tag = tag
    m.keys = keys[0]  # the SDK's setter takes one key
    for k, v in (props or {"color": "blue"}).items():
        m.add_property(k, v)
    if group is not None:
        m.message_group = group
    if deliver_at is not None:
        m.delivery_timestamp = deliver_at
    return m


def assert_stored(keel, topic, receipt, body, tag, keys, props):
    stored_props, stored_body = keel.stored(topic, receipt.message_id)
    assert stored_body == body, (stored_body, body)
    assert stored_props.get("TAGS") == tag, stored_props
    assert stored_props.get("KEYS") == " ".join(keys), stored_props
    assert stored_props.get("UNIQ_KEY") == receipt.message_id, stored_props
    for k, v in props.items():
        assert stored_props.get(k) == v, (k, stored_props)
    return stored_props


def create_topic(keel, topic, message_type=None):
    """The topic, made with `mqadmin updateTopic` (and `-a +message.type=…`: the SDK refuses a
    message of a type its topic does not accept)."""
    argv = [os.path.join(BIN_DIR, "mqadmin"), "updateTopic", "-n", keel.namesrv, "-c", "DefaultCluster", "-t", topic]
    if message_type:
        argv += ["-a", "+message.type=" + message_type]
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    time.sleep(0.5)  # the broker registers the topic with the name server


def test_normal_sends_are_stored_as_sent(keel):
    create_topic(keel, "GrpcNormal")
    producer = Producer(config(keel), ("GrpcNormal",))
    producer.startup()
    try:
        for i in range(5):
            body = ("normal %d" % i).encode()
            props = {"color": "blue", "n": str(i)}
            receipt = producer.send(message("GrpcNormal", body, keys=("k%d" % i,), props=props))
            assert_stored(keel, "GrpcNormal", receipt, body, "TagA", ("k%d" % i,), props)
    finally:
        producer.shutdown()


def test_fifo_sends_carry_their_group_to_one_queue(keel):
    create_topic(keel, "GrpcFifo", "FIFO")
    producer = Producer(config(keel), ("GrpcFifo",))
    producer.startup()
    try:
        for i in range(4):
            body = ("fifo %d" % i).encode()
            receipt = producer.send(message("GrpcFifo", body, group="order-42"))
            props = assert_stored(keel, "GrpcFifo", receipt, body, "TagA", ("order-1",), {"color": "blue"})
            assert props.get("__SHARDINGKEY") == "order-42", props
    finally:
        producer.shutdown()


def test_delay_sends_keep_their_delivery_time(keel):
    create_topic(keel, "GrpcDelay", "DELAY")
    producer = Producer(config(keel), ("GrpcDelay",))
    producer.startup()
    try:
        deliver_at = int(time.time() * 1000) + 2000
        receipt = producer.send(message("GrpcDelay", b"later", deliver_at=deliver_at))
        props = assert_stored(keel, "GrpcDelay", receipt, b"later", "TagA", ("order-1",), {"color": "blue"})
        assert props.get("TIMER_DELIVER_MS") == str(deliver_at), props
    finally:
        producer.shutdown()


def test_a_recalled_delay_message_is_never_delivered(keel):
    create_topic(keel, "GrpcRecall", "DELAY")
    producer = Producer(config(keel), ("GrpcRecall",))
    producer.startup()
    consumer = SimpleConsumer(config(keel), "cg-recall", {"GrpcRecall": FilterExpression("*")}, await_duration=5)
    consumer.startup()
    try:
        deliver_at = int(time.time() * 1000) + 3000
        kept = producer.send(message("GrpcRecall", b"kept", deliver_at=deliver_at))
        taken = producer.send(message("GrpcRecall", b"recalled", deliver_at=deliver_at))
        assert kept.recall_handle and taken.recall_handle, (kept.recall_handle, taken.recall_handle)
        assert producer.recall_message("GrpcRecall", taken.recall_handle) == taken.message_id
        got = receive_until(consumer, 1, 20)
        for m in got:
            consumer.ack(m)
        # Both were due in the same second: anything more would have come by now.
        more = consumer.receive(16, 20)
        assert [m.body for m in got + more] == [b"kept"], [m.body for m in got + more]
        try:
            producer.recall_message("GrpcRecall", kept.recall_handle)
            raise AssertionError("a delivered message was recalled")
        except AssertionError:
            raise
        except Exception as e:
            assert "timestamp invalid" in str(e), e
    finally:
        consumer.shutdown()
        producer.shutdown()


class Checker(TransactionChecker):
    """Commits what asks to be committed, rolls back the rest; records what it was asked."""

    def __init__(self):
        self.checked = []

    def check(self, message):
        self.checked.append(message.body)
        if message.body.startswith(b"roll"):
            return TransactionResolution.ROLLBACK
        return TransactionResolution.COMMIT


def test_tls_on_the_same_port_as_plaintext(keel):
    create_topic(keel, "GrpcTls")
    endpoint = "127.0.0.1:" + keel.grpc.rsplit(":", 1)[1]
    tls_config = ClientConfiguration(endpoint, Credentials(), request_timeout=10)
    producer = Producer(tls_config, ("GrpcTls",), tls_enable=True)
    producer.startup()
    consumer = SimpleConsumer(tls_config, "cg-tls", {"GrpcTls": FilterExpression("*")}, await_duration=5,
                              tls_enable=True)
    consumer.startup()
    plain = Producer(config(keel), ("GrpcTls",))
    plain.startup()
    try:
        sent = {producer.send(message("GrpcTls", b"over tls")).message_id,
                plain.send(message("GrpcTls", b"in plaintext")).message_id}
        got = receive_until(consumer, 2, 20)
        for m in got:
            consumer.ack(m)
        assert {m.message_id for m in got} == sent, [m.body for m in got]
    finally:
        plain.shutdown()
        consumer.shutdown()
        producer.shutdown()


def test_transactions_commit_and_roll_back(keel):
    create_topic(keel, "GrpcTx", "TRANSACTION")
    producer = Producer(config(keel), ("GrpcTx",), Checker())
    producer.startup()
    try:
        tx = producer.begin_transaction()
        committed = producer.send(message("GrpcTx", b"commit me"), tx)
        tx.commit()
        tx = producer.begin_transaction()
        rolled_back = producer.send(message("GrpcTx", b"roll me back"), tx)
        tx.rollback()
        # The committed copy is in the topic; the rolled-back one only as its half message.
        props = assert_stored(keel, "GrpcTx", committed, b"commit me", "TagA", ("order-1",), {"color": "blue"})
        assert props.get("TRAN_MSG") == "true", props
        out = subprocess.run(
            [os.path.join(BIN_DIR, "mqadmin"), "queryMsgByUniqueKey", "-n", keel.namesrv, "-t", "GrpcTx",
             "-i", rolled_back.message_id],
            capture_output=True, text=True)
        assert out.returncode != 0, "a rolled-back message is in its topic: %s" % out.stdout
    finally:
        producer.shutdown()


def test_an_open_transaction_is_checked_back_and_committed(keel):
    create_topic(keel, "GrpcTxCheck", "TRANSACTION")
    checker = Checker()
    producer = Producer(config(keel), ("GrpcTxCheck",), checker)
    producer.startup()
    try:
        tx = producer.begin_transaction()
        receipt = producer.send(message("GrpcTxCheck", b"left open"), tx)
        # Neither committed nor rolled back: the broker asks the producer, whose checker commits.
        props = assert_stored(keel, "GrpcTxCheck", receipt, b"left open", "TagA", ("order-1",), {"color": "blue"})
        assert b"left open" in checker.checked, checker.checked
        assert props.get("TRAN_MSG") == "true", props
    finally:
        producer.shutdown()


def test_a_topic_refuses_a_type_it_does_not_accept(keel):
    create_topic(keel, "GrpcNormalOnly")
    producer = Producer(config(keel), ("GrpcNormalOnly",))
    producer.startup()
    try:
        try:
            producer.send(message("GrpcNormalOnly", b"fifo into normal", group="g"))
        except Exception as e:  # the SDK checks the route's accepted types
            assert "type" in str(e).lower(), e
        else:
            raise AssertionError("a FIFO message was sent to a NORMAL topic")
    finally:
        producer.shutdown()


def receive_until(consumer, count, invisible_s, timeout=30):
    """Messages a simple consumer receives until `count` arrived (or the time is up)."""
    got = []
    deadline = time.time() + timeout
    while len(got) < count and time.time() < deadline:
        got.extend(consumer.receive(16, invisible_s))
    return got


def test_simple_consumer_receives_acks_and_a_deferred_message_comes_back(keel):
    create_topic(keel, "GrpcSimple")
    producer = Producer(config(keel), ("GrpcSimple",))
    producer.startup()
    consumer = SimpleConsumer(config(keel), "cg-simple", {"GrpcSimple": FilterExpression("*")}, await_duration=5)
    consumer.startup()
    try:
        sent = {}
        for i in range(3):
            body = ("simple %d" % i).encode()
            receipt = producer.send(message("GrpcSimple", body, keys=("s%d" % i,), props={"n": str(i)}))
            sent[receipt.message_id] = (body, "s%d" % i, str(i))
        got = receive_until(consumer, 3, 20)
        assert sorted(m.message_id for m in got) == sorted(sent), [m.message_id for m in got]
        for m in got:
            body, key, n = sent[m.message_id]
            assert (m.body, m.tag, list(m.keys), m.properties.get("n")) == (body, "TagA", [key], n), m
            assert m.delivery_attempt == 1 and not m.corrupted, m
        deferred = got[2]
        for m in got[:2]:
            consumer.ack(m)
        # Visible again after 2 s instead of 20: it comes back, its second attempt.
        consumer.change_invisible_duration(deferred, 2)
        again = receive_until(consumer, 1, 20, timeout=20)
        assert [m.message_id for m in again] == [deferred.message_id], [m.message_id for m in again]
        assert again[0].delivery_attempt == 2 and again[0].body == deferred.body, again[0]
        consumer.ack(again[0])
        assert consumer.receive(16, 20) == [], "acked messages came back"
    finally:
        consumer.shutdown()
        producer.shutdown()


class Collect(MessageListener):
    """Records every delivery; fails the first delivery of bodies in `fail_once`."""

    def __init__(self, fail_once=()):
        self.lock = threading.Lock()
        self.deliveries = []
        self.fail_once = set(fail_once)

    def consume(self, m):
        with self.lock:
            self.deliveries.append((m.body, m.delivery_attempt, m.tag, m.properties.get("n")))
            if m.body in self.fail_once:
                self.fail_once.discard(m.body)
                return ConsumeResult.FAILURE
        return ConsumeResult.SUCCESS

    def wait(self, predicate, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if predicate(list(self.deliveries)):
                    return list(self.deliveries)
            time.sleep(0.2)
        with self.lock:
            return list(self.deliveries)


def test_push_consumer_consumes_everything_and_a_failure_is_retried(keel):
    create_topic(keel, "GrpcPush")
    listener = Collect(fail_once=(b"push 2",))
    consumer = PushConsumer(config(keel), "cg-push", listener, {"GrpcPush": FilterExpression("*")})
    consumer.startup()
    producer = Producer(config(keel), ("GrpcPush",))
    producer.startup()
    try:
        for i in range(5):
            producer.send(message("GrpcPush", ("push %d" % i).encode(), props={"n": str(i)}))
        # Each once; "push 2" failed once, so it comes again (its second attempt) after the
        # group's first backoff step.
        got = listener.wait(lambda d: len(d) >= 6, 60)
        time.sleep(2)
        got = listener.wait(lambda d: False, 0)
        bodies = sorted(body for body, _, _, _ in got)
        assert bodies == sorted([("push %d" % i).encode() for i in range(5)] + [b"push 2"]), got
        attempts = sorted(attempt for body, attempt, _, _ in got if body == b"push 2")
        assert attempts == [1, 2], got
        assert all(tag == "TagA" for _, _, tag, _ in got), got
    finally:
        producer.shutdown()
        consumer.shutdown()


def remoting_side(keel, *argv, timeout=90):
    python = os.environ.get("KEEL_REMOTING_PYTHON", "target/interop-venv/bin/python")
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, HOME=os.path.join(os.getcwd(), "target", "interop-home"))
    os.makedirs(env["HOME"], exist_ok=True)
    out = subprocess.run([python, os.path.join(here, "remoting_side.py")] + list(argv),
                         capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_a_remoting_producer_reaches_a_grpc_consumer_unchanged(keel):
    create_topic(keel, "GrpcMixedIn")
    consumer = SimpleConsumer(config(keel), "cg-mixed-in", {"GrpcMixedIn": FilterExpression("*")}, await_duration=5)
    consumer.startup()
    try:
        remoting_side(keel, "send", keel.namesrv, "GrpcMixedIn", "4")
        got = receive_until(consumer, 4, 20)
        seen = sorted((m.body, m.tag, list(m.keys), m.properties.get("seq")) for m in got)
        want = sorted((("remoting-%d" % i).encode(), "TagR", ["rkey-%d" % i], str(i)) for i in range(4))
        assert seen == want, seen
        for m in got:
            consumer.ack(m)
    finally:
        consumer.shutdown()


def test_a_grpc_producer_reaches_a_remoting_consumer_unchanged(keel):
    create_topic(keel, "GrpcMixedOut")
    producer = Producer(config(keel), ("GrpcMixedOut",))
    producer.startup()
    try:
        for i in range(4):
            producer.send(message("GrpcMixedOut", ("grpc-%d" % i).encode(), tag="TagG", keys=("gkey-%d" % i,),
                                  props={"seq": str(i)}))
    finally:
        producer.shutdown()
    lines = remoting_side(keel, "consume", keel.namesrv, "GrpcMixedOut", "cg-mixed-out", "4").splitlines()
    messages = [json.loads(line) for line in lines if line.startswith("{")]
    seen = sorted((m["body"], m["tags"], m["keys"], m["seq"]) for m in messages)
    want = sorted(("grpc-%d" % i, "TagG", "gkey-%d" % i, str(i)) for i in range(4))
    assert seen == want, seen


TESTS = [
    test_normal_sends_are_stored_as_sent,
    test_fifo_sends_carry_their_group_to_one_queue,
    test_delay_sends_keep_their_delivery_time,
    test_a_recalled_delay_message_is_never_delivered,
    test_tls_on_the_same_port_as_plaintext,
    test_transactions_commit_and_roll_back,
    test_an_open_transaction_is_checked_back_and_committed,
    test_a_topic_refuses_a_type_it_does_not_accept,
    test_simple_consumer_receives_acks_and_a_deferred_message_comes_back,
    test_push_consumer_consumes_everything_and_a_failure_is_retried,
    test_a_remoting_producer_reaches_a_grpc_consumer_unchanged,
    test_a_grpc_producer_reaches_a_remoting_consumer_unchanged,
]


def main():
    passed, failed = 0, 0
    keel = Keel()
    try:
        only = os.environ.get("KEEL_INTEROP_ONLY", "")
        for test in TESTS:
            if only not in test.__name__:
                continue
            started = time.time()
            try:
                test(keel)
                passed += 1
                print("ok   %s (%.1fs)" % (test.__name__, time.time() - started), flush=True)
            except Exception:
                failed += 1
                print("FAIL %s\n%s" % (test.__name__, traceback.format_exc()), flush=True)
                print(keel.log_tail(), flush=True)
    finally:
        keel.close()
    print("interop-grpc: %d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
