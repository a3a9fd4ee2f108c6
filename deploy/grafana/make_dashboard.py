"""Writes strom-dashboard.json, the Grafana dashboard of Strom's metrics
(docs/operations.md lists them). Edit the panels here and run it again:

    python3 deploy/grafana/make_dashboard.py

compat-tests/test_operations.py checks that every metric a panel queries
is one Strom serves.
"""

from __future__ import annotations

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "${datasource}"}

# (title, unit, [(expression, legend)]), laid out two to a row.
PANELS = [
    ("Bytes in per topic", "Bps",
     [('sum by (topic) (rate(kafka_server_brokertopicmetrics_bytesin_total{instance=~"$instance"}[$__rate_interval]))',
       "{{topic}}")]),
    ("Bytes out per topic", "Bps",
     [('sum by (topic) (rate(kafka_server_brokertopicmetrics_bytesout_total{instance=~"$instance"}[$__rate_interval]))',
       "{{topic}}")]),
    ("Messages in per topic", "short",
     [('sum by (topic) (rate(kafka_server_brokertopicmetrics_messagesin_total{instance=~"$instance"}[$__rate_interval]))',
       "{{topic}}")]),
    ("Requests per API", "reqps",
     [('sum by (request) (rate(kafka_network_requestmetrics_requests_total{instance=~"$instance"}[$__rate_interval]))',
       "{{request}}")]),
    ("Request time p99 per API", "s",
     [('histogram_quantile(0.99, sum by (request, le) (rate('
       'kafka_network_requestmetrics_totaltime_seconds_bucket{instance=~"$instance"}[$__rate_interval])))',
       "{{request}}")]),
    ("Connections and requests in flight", "short",
     [('sum(kafka_server_socketservermetrics_connection_count{instance=~"$instance"})', "connections"),
      ('sum(kafka_network_requestchannel_inflightrequests{instance=~"$instance"})', "in flight")]),
    ("Partitions", "short",
     [('sum(kafka_server_replicamanager_partitioncount{instance=~"$instance"})', "partitions"),
      ('sum(kafka_server_replicamanager_leadercount{instance=~"$instance"})', "leaders"),
      ('sum(kafka_server_replicamanager_underreplicatedpartitions{instance=~"$instance"})', "under-replicated"),
      ('sum(kafka_server_replicamanager_underminisrpartitioncount{instance=~"$instance"})', "under min ISR"),
      ('max(kafka_controller_kafkacontroller_offlinepartitionscount{instance=~"$instance"})', "offline")]),
    ("Errors per API (other than NONE)", "reqps",
     [('sum by (request, error) (rate(kafka_network_requestmetrics_errors_total{instance=~"$instance",error!="NONE"}'
       '[$__rate_interval]))', "{{request}} {{error}}")]),
    ("ISR shrinks and expansions", "short",
     [('sum(rate(kafka_server_replicamanager_isrshrinks_total{instance=~"$instance"}[$__rate_interval]))', "shrinks"),
      ('sum(rate(kafka_server_replicamanager_isrexpands_total{instance=~"$instance"}[$__rate_interval]))', "expands"),
      ('sum(rate(kafka_server_replicamanager_failedisrupdates_total{instance=~"$instance"}[$__rate_interval]))',
       "failed")]),
    ("Controller quorum", "short",
     [('sum(kafka_controller_kafkacontroller_activecontrollercount{instance=~"$instance"})', "active controllers"),
      ('max(kafka_server_raft_metrics_current_epoch{instance=~"$instance"})', "epoch"),
      ('max by (voter) (strom_raft_voter_lag{instance=~"$instance"})', "lag of voter {{voter}}"),
      ('max(kafka_controller_kafkacontroller_fencedbrokercount{instance=~"$instance"})', "fenced brokers")]),
    ("Log cleaner", "short",
     [('sum(rate(strom_log_cleaner_read_bytes_total{instance=~"$instance"}[$__rate_interval]))', "read B/s"),
      ('max(kafka_log_logcleanermanager_max_dirty_percent{instance=~"$instance"})', "max dirty %"),
      ('sum(kafka_log_logcleanermanager_uncleanable_partitions_count{instance=~"$instance"})', "uncleanable")]),
    ("Transactions completed", "short",
     [('sum by (result) (rate(strom_transactions_completed_total{instance=~"$instance"}[$__rate_interval]))',
       "{{result}}")]),
    ("Log size per topic", "bytes",
     [('sum by (topic) (kafka_log_log_size{instance=~"$instance"})', "{{topic}}")]),
    ("Consumer-group lag", "short",
     [('sum by (consumergroup, topic) (kafka_consumergroup_lag{instance=~"$instance"})',
       "{{consumergroup}} {{topic}}")]),
    ("Consumer-group members", "short",
     [('sum by (consumergroup) (kafka_consumergroup_members{instance=~"$instance"})', "{{consumergroup}}")]),
    ("CPU", "percentunit",
     [('rate(process_cpu_seconds_total{instance=~"$instance"}[$__rate_interval])', "{{instance}}")]),
    ("Memory and files", "short",
     [('process_resident_memory_bytes{instance=~"$instance"}', "RSS {{instance}}"),
      ('process_open_fds{instance=~"$instance"}', "open files {{instance}}")]),
]


def panel(i: int, title: str, unit: str, targets: list[tuple[str, str]]) -> dict:
    return {
        "id": i + 1,
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [{"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(ord("A") + j)}
                    for j, (expr, legend) in enumerate(targets)],
    }


def dashboard() -> dict:
    return {
        "title": "Strom",
        "uid": "strom-overview",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            {"name": "instance", "type": "query", "datasource": DS, "label": "Node", "includeAll": True,
             "multi": True, "allValue": ".*", "refresh": 2,
             "query": {"query": "label_values(kafka_server_replicamanager_partitioncount, instance)",
                       "refId": "instances"}},
        ]},
        "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("strom-dashboard.json")
    out.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {out}")
