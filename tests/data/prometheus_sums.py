#!/usr/bin/python3
"""Reads engines' /metrics with prometheus_client's parser (Debian's python3-prometheus-client)
and prints, as one JSON object, sums over the engines that the metrics test compares with the
work it did. A text the parser refuses ends the script with an error (exit 1).

Usage: prometheus_sums.py HOST:PORT...
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

sums = {}


def add(key, value):
    sums[key] = sums.get(key, 0) + value


for addr in sys.argv[1:]:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=60) as r:
        if not r.headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"):
            sys.exit(f"{addr}: content type {r.headers.get('Content-Type')}")
        text = r.read().decode()
    for fam in text_string_to_metric_families(text):
        add("families", 1)
        for s in fam.samples:
            l = s.labels
            if s.name == "tessera_requests_total":
                add(f"requests.{l['op']}", s.value)
            elif s.name == "tessera_request_errors_total":
                add(f"errors.{l['op']}", s.value)
            elif s.name == "tessera_request_bytes_in_total":
                add(f"bytes_in.{l['op']}", s.value)
            elif s.name == "tessera_request_bytes_out_total":
                add(f"bytes_out.{l['op']}", s.value)
            elif s.name == "tessera_request_duration_seconds_count":
                add(f"duration_count.{l['op']}", s.value)
            elif s.name == "tessera_request_duration_seconds_bucket" and l["le"] == "+Inf":
                add(f"duration_inf.{l['op']}", s.value)
            elif s.name == "tessera_space_used_bytes" and l["pool"] != "0" and l["tier"] == "data":
                add("used_data", s.value)
            elif s.name == "tessera_wal_records_total" and l["pool"] != "0":
                add("wal_records", s.value)
            elif s.name == "tessera_wal_commit_duration_seconds_count" and l["pool"] != "0":
                add("wal_commits", s.value)
            elif s.name == "tessera_wal_groups_total" and l["pool"] != "0":
                add("wal_groups", s.value)
            elif s.name == "tessera_dtx_committed_total":
                add("dtx_committed", s.value)
            elif s.name == "tessera_target_up":
                add("targets_up", s.value)
            elif s.name == "tessera_engine_info":
                add("engines", s.value)
print(json.dumps(sums, sort_keys=True))
