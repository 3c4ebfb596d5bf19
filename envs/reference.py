"""Reference returns: the scripted (non-learned) policy and uniform-random actions in each domain.

    python -m envs.reference darla/Pickup-v0 --episodes 20
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from envs.evaluate import reference_table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m envs.reference", description=__doc__.split("\n")[0])
    parser.add_argument("env_id")
    parser.add_argument("--domains", default=None, help="comma-separated (default: every named domain)")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    table = reference_table(args.env_id, args.domains.split(",") if args.domains else None, args.episodes, args.seed)
    print(f"{args.env_id}: return over {args.episodes} episodes (mean ± sd)")
    for domain, row in table.items():
        print(f"  {domain:<14}" + "  ".join(f"{p} {m:8.2f} ± {s:6.2f}" for p, (m, s) in row.items()))


if __name__ == "__main__":
    main()
