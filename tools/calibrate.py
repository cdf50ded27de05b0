"""Regression guards from a multi-seed claim run: prints the `guards:` YAML block for
configs/claims/<claim>.yaml (per claim-verdict cell: mean and sample sd over seeds of the value
`check` measures on each seed alone, with the run's scale, commit and code hash).

    python tools/calibrate.py RUN_DIR [--command "ra3-repro table1 --scale tiny --seeds 3"]
"""

import argparse
import datetime

import yaml

from repro.claims import module
from repro.claims.record import load_record
from repro.claims.verdicts import calibrate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--command", default="", help="the command that produced RUN_DIR (recorded with the numbers)")
    args = parser.parse_args()
    record = load_record(args.run_dir)
    if len(record["seeds"]) < 3 or record.get("sets"):
        raise SystemExit(f"{args.run_dir}: calibrate from a run of the shipped settings with at least 3 seeds "
                         f"(got seeds {record['seeds']}, --set {record.get('sets')})")
    rows = calibrate(module(record["claim"]).check, record)
    when = datetime.date.today().isoformat()
    for row in rows:
        row["measured_with"] = f"{args.command or record['claim']}, {when}"
    print(yaml.safe_dump({"guards": rows}, sort_keys=False, width=120))


if __name__ == "__main__":
    main()
