#!/usr/bin/env python3
"""The remoting half of the mixed interop tests: Apache's C++ client (PyPI `rocketmq`,
which cannot share a venv with the 5.x SDK: both are the package `rocketmq`), run by
grpc_interop.py in the remoting venv.

  remoting_side.py send <namesrv> <topic> <count>     sends remoting-<i> (keys rkey-<i>,
                                                      tag TagR, property seq=<i>)
  remoting_side.py consume <namesrv> <topic> <group> <count> [timeout]
                                                      push-consumes, one JSON line per message
"""

import json
import sys
import threading
import time

from rocketmq.client import Message, Producer, PushConsumer


def send(namesrv, topic, count):
    producer = Producer("pg-remoting-side")
    producer.set_namesrv_addr(namesrv)
    producer.start()
    try:
        for i in range(count):
            m = Message(topic)
            m.set_keys("rkey-%d" % i)
            m.set_tags("TagR")
            m.set_property("seq", str(i))
            m.set_body("remoting-%d" % i)
            producer.send_sync(m)
    finally:
        producer.shutdown()
    print("sent %d" % count, flush=True)


def consume(namesrv, topic, group, count, timeout):
    got = []
    lock = threading.Lock()

    def callback(msg):
        with lock:
            got.append({
                "body": msg.body.decode(),
                "keys": (msg.keys or b"").decode(),
                "tags": (msg.tags or b"").decode(),
                "seq": (msg.get_property("seq") or b"").decode(),
            })

    consumer = PushConsumer(group)
    consumer.set_namesrv_addr(namesrv)
    consumer.subscribe(topic, callback, "*")
    consumer.start()
    deadline = time.time() + timeout
    while time.time() < deadline:
        with lock:
            if len(got) >= count:
                break
        time.sleep(0.2)
    time.sleep(1.0)  # anything extra would arrive now
    consumer.shutdown()
    for message in got:
        print(json.dumps(message), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        consume(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6]) if len(sys.argv) > 6 else 40)
