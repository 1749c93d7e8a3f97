"""Deployment tooling: template.yaml's generated blocks from dashboards/ and alarms/, and the
checks that keep them, the monitor's metric registry and Lambda's limits in agreement.

``python -m deploy.sync`` writes the generated blocks; ``python -m deploy.sync --check``
runs every check and exits 1 when one fails. The checks are pure functions in
``deploy.checks``; ``deploy.checks.metrics_used`` lists the metrics the dashboards and
alarms use.

deploy/function/ and deploy/layer/ are what ``sam build`` packages (links to handler/ and
monitor/, with the requirements installed beside them); they are not Python packages.
"""
