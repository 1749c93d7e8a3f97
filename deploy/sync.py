"""``python -m deploy.sync [--check] [--root DIR]``: write or check the generated blocks.

Without ``--check`` it checks the sources (dashboards/, alarms/) against the monitor's
registry, then rewrites the generated blocks of template.yaml from them; template.yaml is
left alone when a source has a problem. With ``--check`` it changes nothing and runs every
check (``deploy.checks.check_all``): exit status 0 when all pass, 1 with one line per
problem when one fails.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from deploy.checks import check_all, check_sources, load_template
from deploy.generate import sync_template
from deploy.problems import Problem
from deploy.sources import REPO_ROOT, TEMPLATE, load_sources

EXIT_OK = 0
EXIT_PROBLEMS = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.sync",
        description=(
            "Write template.yaml's generated blocks (dashboard, alarms, saved queries, rollback "
            "alarms) from dashboards/ and alarms/, or check that nothing has drifted."
        ),
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if the template drifted or any check fails",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=REPO_ROOT,
        help="repository to work on (default: this one)",
    )
    return parser


def _report(problems: Sequence[Problem], err: TextIO, advice: str) -> int:
    for problem in problems:
        err.write(f"error: {problem}\n")
    err.write(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}; {advice}\n")
    return EXIT_PROBLEMS


def run_check(root: Path, out: TextIO, err: TextIO) -> int:
    problems = check_all(root)
    if problems:
        return _report(
            problems,
            err,
            "fix them (the generated blocks come from dashboards/ and alarms/: edit those, "
            "then run `python -m deploy.sync`)",
        )
    out.write(
        f"ok: {TEMPLATE} matches dashboards/ and alarms/, every metric is in the monitor's "
        "registry, functions are within Lambda's limits\n"
    )
    return EXIT_OK


def run_sync(root: Path, out: TextIO, err: TextIO) -> int:
    sources, problems = load_sources(root)
    text, template, unreadable = load_template(root)
    problems += unreadable
    if template is not None:
        problems += check_sources(sources, template)
    if problems:
        return _report(problems, err, f"{TEMPLATE} was left unchanged")
    try:
        new_text = sync_template(text, sources)
    except ValueError as exc:
        return _report([Problem(TEMPLATE, str(exc))], err, f"{TEMPLATE} was left unchanged")
    if new_text == text:
        out.write(f"{TEMPLATE} is up to date\n")
        return EXIT_OK
    (root / TEMPLATE).write_text(new_text, encoding="utf-8")
    out.write(
        f"wrote {TEMPLATE}: {len(sources.dashboards)} dashboard(s), {len(sources.queries)} "
        f"saved quer{'y' if len(sources.queries) == 1 else 'ies'}, {len(sources.alarms)} alarm(s)\n"
    )
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    args = build_parser().parse_args(argv)
    stdout, stderr = out or sys.stdout, err or sys.stderr
    root = args.root.resolve()
    if args.check:
        return run_check(root, stdout, stderr)
    return run_sync(root, stdout, stderr)


if __name__ == "__main__":
    sys.exit(main())
