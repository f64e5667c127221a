"""``cockpit-log-wandb``: create the cockpit chart presets in a W&B entity, replay a spool, read a run.

cockpit-log-wandb charts --entity my-team          # once per entity, needs W&B online
cockpit-log-wandb replay wandb/offline-run-.../cockpit-spool.jsonl
cockpit-log-wandb read wandb/offline-run-...       # prints how many records of each quantity
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cockpit-log-wandb``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="cockpit-log-wandb", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    charts = sub.add_parser("charts", help="create the custom chart presets in an entity (online)")
    charts.add_argument("--entity", required=True, help="W&B user or team that will own the presets")
    charts.add_argument("--access", choices=["private", "public"], default="private")
    replay = sub.add_parser("replay", help="log the records of a spool file into W&B")
    replay.add_argument("spool", help="the spool file (cockpit-spool.jsonl)")
    replay.add_argument("--project", default=None)
    replay.add_argument("--entity", default=None)
    replay.add_argument("--id", default=None, help="run id to log into (default: the spool's run, resumed)")
    replay.add_argument("--mode", default=None, choices=["online", "offline"])
    read = sub.add_parser("read", help="count the cockpit records of an offline run directory")
    read.add_argument("run_dir")
    args = parser.parse_args(argv)

    if args.command == "charts":
        from ._wandb_charts import create_chart_presets

        for chart_id in create_chart_presets(args.entity, access=args.access):
            print(f"created {chart_id}")
        print(f"log runs with sink_options={{'wandb': {{'chart_entity': {args.entity!r}}}}} to use them")
        return 0
    if args.command == "replay":
        from .wandb_sink import replay_wandb

        options = {"project": args.project, "entity": args.entity, "id": args.id, "mode": args.mode}
        if args.id:
            options["resume"] = "allow"
        count = replay_wandb(args.spool, **{k: v for k, v in options.items() if v is not None})
        print(f"replayed {count} records from {args.spool}")
        return 0
    from .wandb_sink import read_wandb

    records = read_wandb(args.run_dir)
    steps = {r.step for r in records}
    print(f"{len(records)} records over {len(steps)} steps in {args.run_dir}")
    for quantity, n in sorted(Counter(r.quantity for r in records).items()):
        print(f"  {quantity:<14} {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
