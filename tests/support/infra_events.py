#!/usr/bin/env python3
"""Puts events through EventBridge rules on a running moto_server and reports which rule
received which event, for tests/tests/infra.rs (one process instead of dozens of `aws`
calls: the test stays fast). moto's EventBridge is the pattern matcher; this script only
wires each rule to an SQS queue of its own and reads the queues back.

    infra_events.py ENDPOINT < spec.json > received.json

spec:     {"rules": [{"id": "...", "region": "...", "bus": "default", "pattern": {...}}],
           "events": [{"region": "...", "entry": {PutEvents entry}}]}
received: {"RULE ID": [event, ...]}   (every event each rule's queue received, as JSON)

Needs boto3 (installed with moto in the tests' virtualenv).
"""

from __future__ import annotations

import json
import os
import sys

import boto3


def main() -> int:
    endpoint = sys.argv[1]
    spec = json.load(sys.stdin)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    clients: dict = {}

    def client(service: str, region: str):
        key = (service, region)
        if key not in clients:
            clients[key] = boto3.client(service, region_name=region, endpoint_url=endpoint)
        return clients[key]

    queues = {}
    buses = set()
    for n, rule in enumerate(spec["rules"]):
        region, bus = rule["region"], rule["bus"]
        events, sqs = client("events", region), client("sqs", region)
        if bus != "default" and (region, bus) not in buses:
            try:
                events.create_event_bus(Name=bus)
            except events.exceptions.ResourceAlreadyExistsException:
                pass
            buses.add((region, bus))
        url = sqs.create_queue(QueueName=f"tozai-infra-{n}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        name = f"tozai-infra-{n}"
        events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(rule["pattern"]))
        answer = events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "sqs", "Arn": arn}])
        if answer["FailedEntryCount"]:
            raise SystemExit(f"put_targets for {rule['id']}: {answer}")
        queues[rule["id"]] = (region, url)

    for event in spec["events"]:
        answer = client("events", event["region"]).put_events(Entries=[event["entry"]])
        if answer["FailedEntryCount"]:
            raise SystemExit(f"put_events {event}: {answer}")

    received = {}
    for rule_id, (region, url) in queues.items():
        sqs, got = client("sqs", region), []
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                break
            for m in messages:
                got.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        received[rule_id] = got
    json.dump(received, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
