"""The performance guard: the figures sparkify holds itself to, each measured against its peer
in the same run (or as a peak), printed next to its goal. Exits 1 when one misses.

- the real data into DuckDB against DuckDB's own SQL over the same files (>= 20x);
- the generated 100x job against DuckDB's and Polars' whole jobs (>= 1.5x each);
- the events job (the real logs x100) against the faster of DuckDB's read_json and Polars'
  read_ndjson merely parsing the same files (>= 1.25x);
- peak memory with 2.2 GB of events (the real logs x600) into DuckDB (<= 400 MiB), and with
  the generated 1000x job (3.9 GB) against it (<= 1.25x: memory stays flat with the input);
- one day added to a DuckDB warehouse of 60 and of 180 days against that day alone into an
  empty one (<= 1.5x).

Ratios are of medians over --rounds rounds, every job of a figure once a round (after one
round that warms the page cache), so that a machine slowing down mid-run weighs on both sides
alike. Timings on these machines vary by up to 45% from one hour to the next: the guard is
not part of the test command. Run through `benches/guard`, which prepares the peers' virtual
environment and builds the binary; writes benches/results/guard.md.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402
import daily  # noqa: E402

ROOT = compare.ROOT


def median_walls(runs):
    return statistics.median(r[0] for r in runs)


def ratio_figures(args, work, plan_dir):
    """The whole jobs: the real data against DuckDB, the 100x data against both peers."""
    out = []
    real = compare.whole_jobs(args.sparkify, compare.generated(args.sparkify, work, 1), work,
                              plan_dir, ["sparkify", "duckdb"], "guard-1")
    runs = compare.in_rounds({t: c[0] for t, c in real.items()}, args.rounds,
                             lambda t: compare.fresh(real[t][1]))
    ours, peer = median_walls(runs["sparkify"]), median_walls(runs["duckdb"])
    out.append(("the real data into DuckDB, against DuckDB's SQL over the same files",
                f"{peer / ours:.1f}x ({ours:.2f} s vs {peer:.2f} s)", peer / ours >= 20, ">= 20x"))

    root = compare.generated(args.sparkify, work, 100)
    gen = compare.whole_jobs(args.sparkify, root, work, plan_dir,
                             ["sparkify", "duckdb", "polars"], "guard-100")
    runs = compare.in_rounds({t: c[0] for t, c in gen.items()}, args.rounds,
                             lambda t: compare.fresh(gen[t][1]))
    ours = median_walls(runs["sparkify"])
    mb = compare.data_bytes(root) / 1e6
    for peer, name in [("duckdb", "DuckDB's"), ("polars", "Polars'")]:
        theirs = median_walls(runs[peer])
        out.append((f"the generated 100x job ({mb:.0f} MB), against {name}",
                    f"{theirs / ours:.2f}x ({ours:.2f} s = {mb / ours:.0f} MB/s vs {theirs:.2f} s)",
                    theirs / ours >= 1.5, ">= 1.5x"))

    logs = compare.replicated_logs(work, 100)
    jobs = compare.events_jobs(args.sparkify, logs, work, plan_dir)
    runs = compare.in_rounds(jobs, args.rounds)
    names = list(jobs)
    ours = median_walls(runs[names[0]])
    peer = min(median_walls(runs[n]) for n in names[1:])
    mb = compare.data_bytes(logs) / 1e6
    out.append((f"the events job (real logs x100, {mb:.0f} MB), against the faster bare parse",
                f"{peer / ours:.2f}x ({ours:.2f} s = {mb / ours:.0f} MB/s vs {peer:.2f} s)",
                peer / ours >= 1.25, ">= 1.25x"))
    return out


def memory_figures(args, work):
    """Peak RSS of the 2.2 GB events job and of the 1000x job, the highest of two runs each."""
    logs = compare.replicated_logs(work, 600)
    job = next(iter(compare.events_jobs(args.sparkify, logs, work, work / "plan").values()))
    events = [compare.run_measured(job) for _ in range(2)]
    peak = max(r[1] for r in events)
    gb = compare.data_bytes(logs) / 1e9
    out = [(f"peak memory, {gb:.1f} GB of events (real logs x600) into DuckDB",
            f"{peak:.0f} MiB ({min(r[0] for r in events):.2f} s)", peak <= 400, "<= 400 MiB")]
    root = compare.generated(args.sparkify, work, 1000)
    (cmd, db, _), = compare.whole_jobs(args.sparkify, root, work, work / "plan", ["sparkify"],
                                      "guard-1000").values()
    big = []
    for _ in range(2):
        compare.fresh(db)
        big.append(compare.run_measured(cmd))
    top = max(r[1] for r in big)
    gb = compare.data_bytes(root) / 1e9
    out.append((f"peak memory, the generated 1000x job ({gb:.1f} GB), against the one above",
                f"{top / peak:.2f}x ({top:.0f} MiB, {min(r[0] for r in big):.2f} s)",
                top / peak <= 1.25, "<= 1.25x"))
    return out


def daily_figures(args, work):
    """A day added to a DuckDB warehouse of N days against the same day alone."""
    most = 180 + args.rounds
    gen = work / f"daily-gen-{most}"
    if not (gen / "log_data").exists():
        daily.run([args.sparkify, "gen", "--out", str(gen), "--songs", "2000", "--days",
                   str(most), "--users", "1000", "--events-per-day", "10000"])
    logs = sorted((gen / "log_data").rglob("*.json"))
    out = []
    for n in [60, 180]:
        folder, alone_folder = work / f"daily-{n}", work / f"daily-{n}-alone"
        for f in [folder, alone_folder]:
            if f.exists():
                for x in f.iterdir():
                    x.unlink()
        db, alone_db = work / f"daily-{n}.duckdb", work / f"daily-{n}-alone.duckdb"
        compare.fresh(db)
        daily.link_days(logs[:n], folder)

        def etl(events, sink_db, *extra):
            return daily.run([args.sparkify, "etl", "--songs", str(gen / "song_data"), "--events",
                              str(events), "--sink", f"duckdb:{sink_db}", *extra])

        etl(folder, db, "--incremental")
        added, alone = [], []
        for r in range(args.rounds):
            day = logs[n + r]
            daily.link_days([day], folder)
            added.append(etl(folder, db, "--incremental"))
            for x in alone_folder.iterdir() if alone_folder.exists() else []:
                x.unlink()
            daily.link_days([day], alone_folder)
            compare.fresh(alone_db)
            alone.append(etl(alone_folder, alone_db))
        a, b = statistics.median(added), statistics.median(alone)
        out.append((f"a day added to {n} days in DuckDB, against the day alone",
                    f"{a / b:.2f}x ({a:.3f} s vs {b:.3f} s)", a / b <= 1.5, "<= 1.5x"))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sparkify", required=True, help="the sparkify binary")
    ap.add_argument("--work", required=True, type=Path, help="where the data sets are kept")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="ratios,memory,daily",
                    help="which groups of figures: ratios, memory, daily")
    args = ap.parse_args()
    start = time.perf_counter()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    plan_dir = work / "plan"
    compare.write_jobs(args.sparkify, plan_dir)
    groups = args.only.split(",")
    figures = []
    if "ratios" in groups:
        figures += ratio_figures(args, work, plan_dir)
    if "memory" in groups:
        figures += memory_figures(args, work)
    if "daily" in groups:
        figures += daily_figures(args, work)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    lines = [f"{time.strftime('%Y-%m-%d %H:%M %Z')}, commit {commit}"
             f"{' with uncommitted changes' if dirty else ''}, {os.cpu_count()} cores, "
             f"{args.rounds} rounds, {time.perf_counter() - start:.0f} s in all.", "",
             "| figure | measured | goal | |", "|---|---|---|---|"]
    for name, measured, ok, goal in figures:
        lines.append(f"| {name} | {measured} | {goal} | {'ok' if ok else 'MISSED'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    compare.OUT.mkdir(parents=True, exist_ok=True)
    (compare.OUT / "guard.md").write_text(text)
    missed = [f[0] for f in figures if not f[2]]
    if missed:
        print(f"guard: {len(missed)} of {len(figures)} figures missed their goal", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
