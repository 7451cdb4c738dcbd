"""Daily loads: what adding one day costs a warehouse that already holds N days.

For each N (--days, default 30,90,180) and each sink (DuckDB, PostgreSQL), a generated data set
of N days is loaded into an empty sink (not timed), then, each `--rounds` times:

- added:   one more day's log appears and `etl --incremental` loads it;
- alone:   that day's log alone (with the same song files) is loaded into an empty sink, the
           cost the added day is held to;
- changed: one day's log already loaded changes (an event's level flips) and
           `etl --incremental` replaces it.

The goals: added <= 1.5 x alone; added at 180 days <= 1.25 x added at 30 days; changed <=
added. Prints a markdown table and writes benches/results/daily.md.

Run through `benches/daily`, which builds the release binary and starts a PostgreSQL server.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benches" / "results"


def run(cmd):
    """Runs cmd, which must succeed; its wall seconds."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return wall


def link_days(days, folder):
    """`folder` holding hard links to `days` (the same size and mtime as the originals)."""
    folder.mkdir(parents=True, exist_ok=True)
    for day in days:
        target = folder / day.name
        if not target.exists():
            os.link(day, target)


def flip_level(path):
    """Changes `path` in place: the first event's level flips (a new size or mtime)."""
    lines = path.read_text().splitlines()
    first = lines[0]
    if '"level":"free"' in first:
        lines[0] = first.replace('"level":"free"', '"level":"paid"', 1)
    else:
        lines[0] = first.replace('"level":"paid"', '"level":"free"', 1)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sparkify", required=True)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--postgres", help="a server URL without a database: postgres://user@host:port")
    ap.add_argument("--days", default="30,90,180")
    ap.add_argument("--events-per-day", type=int, default=10_000)
    ap.add_argument("--songs", type=int, default=2_000)
    ap.add_argument("--users", type=int, default=1_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sinks", default="duckdb,postgres")
    args = ap.parse_args()
    bin_ = args.sparkify
    days_list = [int(d) for d in args.days.split(",")]
    sinks = args.sinks.split(",")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    most = max(days_list) + args.rounds
    gen = work / f"gen-{most}-{args.events_per_day}-{args.songs}"
    if not (gen / "log_data").exists():
        run([bin_, "gen", "--out", str(gen), "--songs", str(args.songs), "--days", str(most),
             "--users", str(args.users), "--events-per-day", str(args.events_per_day)])
    logs = sorted((gen / "log_data").rglob("*.json"))
    songs = gen / "song_data"
    day_mb = statistics.mean(p.stat().st_size for p in logs) / 1e6

    def sink_for(kind, name):
        if kind == "duckdb":
            path = work / f"{name}.duckdb"
            for p in [path, Path(str(path) + ".wal")]:
                if p.exists():
                    p.unlink()
            return f"duckdb:{path}"
        db = name.replace("-", "_")
        base = args.postgres.rstrip("/")
        run(["psql", f"{base}/postgres", "-qc", f"DROP DATABASE IF EXISTS {db}"])
        run(["psql", f"{base}/postgres", "-qc", f"CREATE DATABASE {db}"])
        return f"{base}/{db}"

    def etl(events, sink, *extra):
        return run([bin_, "etl", "--songs", str(songs), "--events", str(events), "--sink", sink,
                    *extra])

    rows = []
    for kind in sinks:
        if kind == "postgres" and not args.postgres:
            sys.exit("--postgres is needed for the postgres sink")
        for n in days_list:
            folder = work / f"{kind}-{n}-logs"
            if folder.exists():
                for f in folder.iterdir():
                    f.unlink()
            link_days(logs[:n], folder)
            sink = sink_for(kind, f"daily-{n}")
            built = etl(folder, sink, "--incremental")
            added, alone, changed = [], [], []
            for r in range(args.rounds):
                day = logs[n + r]
                link_days([day], folder)
                added.append(etl(folder, sink, "--incremental"))
                lone = work / f"{kind}-{n}-alone"
                if lone.exists():
                    for f in lone.iterdir():
                        f.unlink()
                link_days([day], lone)
                alone.append(etl(lone, sink_for(kind, f"alone-{n}")))
                # A day loaded before changes: its link is replaced by a changed copy.
                old = folder / logs[n // 2].name
                copy = work / f"{kind}-{n}-changed.json"
                copy.write_bytes(old.read_bytes())
                flip_level(copy)
                os.replace(copy, old)
                changed.append(etl(folder, sink, "--incremental"))
            med = statistics.median
            rows.append({
                "sink": kind, "days": n, "built": built,
                "added": med(added), "alone": med(alone), "changed": med(changed),
                "all": (added, alone, changed),
            })
            r = rows[-1]
            print(f"{kind} {n} days: built {built:.2f} s; added {r['added']:.2f} s, alone "
                  f"{r['alone']:.2f} s, changed {r['changed']:.2f} s", flush=True)

    head = (f"{args.events_per_day:,} events a day ({day_mb:.1f} MB of log), {args.songs:,} song "
            f"files, {args.users:,} users; medians of {args.rounds} rounds; commit "
            f"{subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}, "
            f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores.")
    lines = [head, "",
             "| sink | days held | added day (s) | that day alone (s) | added / alone | "
             "a changed day (s) | changed / added | added / added at the fewest days |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        first = next(x for x in rows if x["sink"] == r["sink"])
        lines.append(
            f"| {r['sink']} | {r['days']} | {r['added']:.2f} | {r['alone']:.2f} | "
            f"{r['added'] / r['alone']:.2f} | {r['changed']:.2f} | "
            f"{r['changed'] / r['added']:.2f} | {r['added'] / first['added']:.2f} |")
    lines += ["", "Every run (seconds): added; alone; changed.", ""]
    for r in rows:
        a, b, c = r["all"]
        fmt = lambda xs: " ".join(f"{x:.2f}" for x in xs)
        lines.append(f"- {r['sink']} {r['days']} days (built in {r['built']:.1f} s): "
                     f"{fmt(a)}; {fmt(b)}; {fmt(c)}")
    text = "\n".join(lines) + "\n"
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "daily.md").write_text(text)


if __name__ == "__main__":
    main()
