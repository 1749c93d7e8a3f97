"""Deployment tooling: template.yaml's generated blocks from dashboards/ and alarms/, and the
checks that keep them, the monitor's metric registry and Lambda's limits in agreement.

``python -m deploy.sync`` writes the generated blocks; ``python -m deploy.sync --check``
runs every check and exits 1 when one fails. The checks are pure functions in
``deploy.checks``; ``deploy.checks.metrics_used`` lists the metrics the dashboards and
alarms use.

deploy/function/ and deploy/layer/ are what ``sam build`` packages (links to handler/ and
to monitor/'s modules, without monitor/report/, with the requirements installed beside
them); they are not Python packages. A new module of monitor/ needs its link in
deploy/layer/monitor/ (tests/deploy/test_layer.py says so).
"""
