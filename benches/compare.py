"""Side-by-side: sparkify, DuckDB (read_json + the same star schema in SQL) and Polars
(scan_ndjson + the same transforms, collected by its streaming engine), measured in the same
run on the same data: wall time, MB/s and peak RSS. `--scales 100,1000` adds the 1000x scale
(about 3.6 GB of events), well beyond memory-friendly sizes.

Then the events alone (`--events-scale`, default 100: the real logs copied 100 times):
sparkify's whole events job against DuckDB's read_json and Polars' read_ndjson merely parsing
the same files into memory, best of 3 each.

Run through `benches/compare`, which prepares the virtual environment. Scales: 1x is the real
data (fixtures/sparkify); Nx is written by `sparkify gen`: as many song files as the real data
(14,896; a hundred times more one-object files would measure the file system more than any
engine) and N times its events, 5% of the plays matching a song as in the real data (333 of
6,820), so that every star table has rows.

Prints a markdown table and writes benches/results/compare.md and compare.png.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benches" / "results"


def run_measured(cmd, env=None):
    """Runs cmd; returns (wall seconds, peak RSS in MiB, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{cmd[0]} failed:\n{out.decode()}\n{err.decode()}")
    return wall, usage.ru_maxrss / 1024, out.decode()


def in_rounds(cmds, rounds, before=lambda key: None):
    """Runs each of cmds (by key) once to warm the page cache, then `rounds` times, each
    command once a round, so that a machine slowing down or speeding up mid-run weighs on
    every command alike; calls before(key) ahead of each run. Returns the measured runs
    ((wall, RSS, stdout), as run_measured gives them) by key."""
    measured = {key: [] for key in cmds}
    for round_ in range(1 + rounds):
        for key, cmd in cmds.items():
            before(key)
            run = run_measured(cmd)
            if round_:
                measured[key].append(run)
    return measured


STAR = ["ft_songplays", "dm_users", "dm_songs", "dm_artists", "dm_time"]


def data_bytes(root):
    return sum(p.stat().st_size for p in Path(root).rglob("*.json"))


# The events' columns, as the peers' jobs declare them (substituted into each script's text).
EVENT_COLUMNS_SQL = ("{artist:'VARCHAR', auth:'VARCHAR', firstName:'VARCHAR', gender:'VARCHAR', "
                     "itemInSession:'INTEGER', lastName:'VARCHAR', length:'DOUBLE', level:'VARCHAR', "
                     "location:'VARCHAR', method:'VARCHAR', page:'VARCHAR', registration:'DOUBLE', "
                     "sessionId:'INTEGER', song:'VARCHAR', status:'INTEGER', ts:'BIGINT', "
                     "userAgent:'VARCHAR', userId:'VARCHAR'}")
EVENTS_SCHEMA_PL = """{
    "artist": pl.Utf8, "auth": pl.Utf8, "firstName": pl.Utf8, "gender": pl.Utf8,
    "itemInSession": pl.Int32, "lastName": pl.Utf8, "length": pl.Float64, "level": pl.Utf8,
    "location": pl.Utf8, "method": pl.Utf8, "page": pl.Utf8, "registration": pl.Float64,
    "sessionId": pl.Int32, "song": pl.Utf8, "status": pl.Int32, "ts": pl.Int64,
    "userAgent": pl.Utf8, "userId": pl.Utf8}"""


def script(text):
    """A job's text with the shared column declarations in place."""
    return (text.replace("EVENT_COLUMNS", EVENT_COLUMNS_SQL.replace("{", "{{").replace("}", "}}"))
            .replace("EVENTS_SCHEMA", EVENTS_SCHEMA_PL))


DUCKDB = r"""
import duckdb, sys, json
root, db, plan = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3]))
con = duckdb.connect(db)
con.execute("BEGIN")
for s in plan["ddl"]:
    con.execute(s)
con.execute(f'''INSERT INTO staging_songs SELECT num_songs, artist_id, artist_latitude, artist_longitude,
    artist_location, CAST(artist_name AS VARCHAR), song_id, CAST(title AS VARCHAR), duration, year,
    NULL AS etl_file_id
    FROM read_json('{root}/song_data/**/*.json', format='newline_delimited', columns={{
      num_songs:'INTEGER', artist_id:'VARCHAR', artist_latitude:'DOUBLE', artist_longitude:'DOUBLE',
      artist_location:'VARCHAR', artist_name:'VARCHAR', song_id:'VARCHAR', title:'VARCHAR',
      duration:'DOUBLE', year:'INTEGER'}})''')
con.execute(f'''INSERT INTO staging_events SELECT artist, auth, firstName, gender, itemInSession, lastName,
    length, level, location, method, page, registration, sessionId, song, status,
    make_timestamp(ts * 1000), userAgent, CAST(NULLIF(userId, '') AS INTEGER), NULL AS etl_file_id
    FROM read_json('{root}/log_data/**/*.json', format='newline_delimited', columns=EVENT_COLUMNS)''')
for s in plan["transforms"] + plan["keys"]:
    con.execute(s)
con.execute("COMMIT")
print(json.dumps({t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ["ft_songplays", "dm_users", "dm_songs", "dm_artists", "dm_time"]}))
"""

# DuckDB storing rows it already holds: sparkify's staging_events copied into a new table (in a
# transaction rolled back), no JSON involved. No tool loads these rows into DuckDB faster.
FLOOR = r"""
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])
con.execute("SET preserve_insertion_order = false")
best = None
for _ in range(2):
    con.execute("BEGIN")
    start = time.perf_counter()
    con.execute("CREATE TABLE floor_copy AS SELECT * FROM staging_events")
    took = time.perf_counter() - start
    con.execute("ROLLBACK")
    best = took if best is None else min(best, took)
print(best)
"""

POLARS = r"""
import polars as pl, sys, json, glob
# Lazy throughout, collected by Polars' streaming engine: the peer at its best on inputs
# larger than memory.
root = sys.argv[1]
songs = pl.concat([pl.read_ndjson(f, schema={
    "num_songs": pl.Int32, "artist_id": pl.Utf8, "artist_latitude": pl.Float64,
    "artist_longitude": pl.Float64, "artist_location": pl.Utf8, "artist_name": pl.Utf8,
    "song_id": pl.Utf8, "title": pl.Utf8, "duration": pl.Float64, "year": pl.Int32})
    for f in glob.glob(f"{root}/song_data/**/*.json", recursive=True)]).lazy()
events = pl.scan_ndjson(sorted(glob.glob(f"{root}/log_data/**/*.json", recursive=True)), schema=EVENTS_SCHEMA)
events = events.with_columns(
    pl.from_epoch("ts", time_unit="ms").alias("ts"),
    pl.col("userId").replace("", None).cast(pl.Int32))
users = (events.filter(pl.col("userId").is_not_null())
    .sort(["ts", "itemInSession", "sessionId"], descending=True, nulls_last=True)
    .unique("userId", keep="first"))
dm_songs = (songs.filter(pl.col("song_id").is_not_null())
    .with_columns(((pl.col("year").is_null()) | (pl.col("year") == 0)).alias("_noyear"))
    .sort(["_noyear", "duration", "artist_id", "title"], descending=[False, True, False, False], nulls_last=True)
    .unique("song_id", keep="first"))
dm_artists = (songs.filter(pl.col("artist_id").is_not_null())
    .with_columns(pl.col("artist_latitude").is_null().alias("_nolat"),
                  ((pl.col("artist_location").is_null()) | (pl.col("artist_location") == "")).alias("_noloc"),
                  pl.col("artist_name").str.len_chars().alias("_len"))
    .sort(["_nolat", "_noloc", "_len", "artist_name", "song_id"], nulls_last=True)
    .unique("artist_id", keep="first"))
plays = (events.filter((pl.col("page") == "NextSong") & pl.col("ts").is_not_null()
                       & pl.col("sessionId").is_not_null() & pl.col("itemInSession").is_not_null())
    .sort(["ts", "userId"], nulls_last=True).unique(["sessionId", "itemInSession"], keep="first"))
matched = (plays.join(songs, left_on=["song", "artist"], right_on=["title", "artist_name"])
    .with_columns((pl.col("duration") - pl.col("length")).abs().alias("_d"))
    .sort(["_d", "song_id"], nulls_last=True).unique(["sessionId", "itemInSession"], keep="first"))
songplays = matched.with_columns(pl.col("userAgent").str.strip_prefix('"').str.strip_suffix('"'))
dm_time = plays.select(pl.col("ts").unique().alias("start_time")).with_columns(
    pl.col("start_time").dt.hour().alias("hour"), pl.col("start_time").dt.day().alias("day"),
    pl.col("start_time").dt.week().alias("week"), pl.col("start_time").dt.month().alias("month"),
    pl.col("start_time").dt.year().alias("year"), pl.col("start_time").dt.weekday().alias("weekday"))
tables = {"ft_songplays": songplays, "dm_users": users, "dm_songs": dm_songs,
          "dm_artists": dm_artists, "dm_time": dm_time}
frames = pl.collect_all(list(tables.values()), engine="streaming")
print(json.dumps({name: df.height for name, df in zip(tables, frames)}))
"""

# The events alone, parsed into memory and nothing else: the bar sparkify's whole events job
# (parse, star schema, DuckDB file committed) is measured against.
DUCKDB_EVENTS = r"""
import duckdb, sys
con = duckdb.connect()
con.execute(f'''CREATE TABLE e AS SELECT * FROM read_json('{sys.argv[1]}/**/*.json',
    format='newline_delimited', columns=EVENT_COLUMNS)''')
print(con.execute("SELECT count(*) FROM e").fetchone()[0])
"""

POLARS_EVENTS = r"""
import polars as pl, sys, glob
events = pl.read_ndjson(sorted(glob.glob(f"{sys.argv[1]}/**/*.json", recursive=True)), schema=EVENTS_SCHEMA)
print(events.height)
"""


def replicated_logs(work, n):
    """The real logs copied n times (new names, same lines) into work/logs{n}, made once."""
    logs = work / f"logs{n}"
    if not logs.exists():
        tmp = work / f"logs{n}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in sorted((ROOT / "fixtures/sparkify/log_data").rglob("*.json")):
            data = f.read_bytes()
            for i in range(n):
                (tmp / f"{f.stem}-{i}.json").write_bytes(data)
        tmp.rename(logs)
    return logs


def events_jobs(sparkify, logs, work, plan_dir):
    """The events-only jobs over `logs` by name: sparkify's whole job first, then the peers'
    bare parses."""
    # One song file: the events are what is measured.
    song = next((ROOT / "fixtures/sparkify/song_data").rglob("*.json"))
    (plan_dir / "duckdb_events.py").write_text(script(DUCKDB_EVENTS))
    (plan_dir / "polars_events.py").write_text(script(POLARS_EVENTS))
    db = work / "events-only.duckdb"
    return {
        "sparkify (parse, star schema, DuckDB committed)": [
            sparkify, "etl", "--songs", str(song), "--events", str(logs),
            "--sink", f"duckdb:{db}", "--max-errors", "1000000"],
        "DuckDB read_json (parse into memory)": [
            sys.executable, str(plan_dir / "duckdb_events.py"), str(logs)],
        "Polars read_ndjson (parse into memory)": [
            sys.executable, str(plan_dir / "polars_events.py"), str(logs)],
    }


def generated(sparkify, work, scale):
    """The Nx data set (see the module's notes) in work/gen{scale}, generated once; 1x is
    the real data."""
    if scale == 1:
        return ROOT / "fixtures/sparkify"
    root = work / f"gen{scale}"
    if not (root / "log_data").exists():
        tmp = work / f"gen{scale}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sparkify, "gen", "--out", str(tmp), "--songs", "14896",
                        "--days", "30", "--users", "100", "--events-per-day", str(270 * scale),
                        "--match-fraction", "0.05", "--seed", str(scale)],
                       check=True, capture_output=True)
        tmp.rename(root)
    return root


def write_jobs(sparkify, plan_dir):
    """The peers' whole-job scripts in plan_dir, with sparkify's own SQL plan (its DDL, its
    transforms and its keys, from `etl --transform sql --dry-run`) for DuckDB's."""
    plan_dir.mkdir(parents=True, exist_ok=True)
    dry = subprocess.run([sparkify, "etl", "--songs", str(ROOT / "fixtures/sparkify/song_data"),
                          "--events", str(ROOT / "fixtures/sparkify/log_data"), "--sink",
                          f"duckdb:{plan_dir}/x.duckdb", "--transform", "sql", "--dry-run"],
                         check=True, capture_output=True, text=True).stdout
    statements = [s.strip() for s in dry.split(";\n\n") if s.strip()]
    statements = [s.rstrip(";") for s in statements if not s.startswith("--")]
    ddl = [s for s in statements if s.startswith(("DROP", "CREATE"))]
    transforms = [s for s in statements if s.startswith("INSERT")]
    # The same primary keys as sparkify's, added as it adds them: after the rows.
    keys = [s for s in statements if s.startswith("ALTER")]
    assert keys, "no ALTER TABLE … ADD PRIMARY KEY in the plan"
    (plan_dir / "plan.json").write_text(json.dumps({"ddl": ddl, "transforms": transforms,
                                                    "keys": keys}))
    (plan_dir / "duckdb_job.py").write_text(script(DUCKDB))
    (plan_dir / "polars_job.py").write_text(script(POLARS))
    (plan_dir / "floor_job.py").write_text(FLOOR)


def whole_jobs(sparkify, root, work, plan_dir, tools, tag):
    """Each tool's whole job over the data set in `root`, by tool: (command, its DuckDB file,
    sparkify's summary file)."""
    cmds = {}
    for tool in tools:
        db = work / f"{tool}-{tag}.duckdb"
        summary = work / f"{tool}-{tag}.json"
        if tool == "sparkify":
            cmd = [sparkify, "etl", "--songs", str(root / "song_data"), "--events",
                   str(root / "log_data"), "--sink", f"duckdb:{db}", "--max-errors", "1000000",
                   "--summary-json", str(summary)]
        elif tool == "duckdb":
            cmd = [sys.executable, str(plan_dir / "duckdb_job.py"), str(root), str(db),
                   str(plan_dir / "plan.json")]
        else:
            cmd = [sys.executable, str(plan_dir / "polars_job.py"), str(root)]
        cmds[tool] = (cmd, db, summary)
    return cmds


def fresh(db):
    """A DuckDB file and its WAL removed, for a job to make them again."""
    for p in [db, Path(str(db) + ".wal")]:
        if p.exists():
            p.unlink()


def events_only(args, work, plan_dir):
    """The real logs copied N times (new names, same lines): sparkify's whole events job
    against DuckDB's read_json and Polars' read_ndjson merely parsing them, best of 3 each."""
    n = args.events_scale
    logs = replicated_logs(work, n)
    size = data_bytes(logs)
    jobs = events_jobs(args.sparkify, logs, work, plan_dir)
    all_runs = in_rounds(jobs, 3)
    best = {}
    for name, runs in all_runs.items():
        best[name] = (min(r[0] for r in runs), max(r[1] for r in runs))
        print(f"events x{n} {name}: best {best[name][0]:.2f} s, {best[name][1]:.0f} MiB", flush=True)
    ours = best[next(iter(jobs))][0]
    peers = [v[0] for k, v in best.items() if not k.startswith("sparkify")]
    lines = [f"Events only: the real logs x{n} ({size / 1e6:.0f} MB), best of 3 each.", "",
             "| job | best s | MB/s | peak RSS MiB | time / sparkify's time |",
             "|---|---:|---:|---:|---:|"]
    for name, (wall, rss) in best.items():
        lines.append(f"| {name} | {wall:.2f} | {size / wall / 1e6:.0f} | {rss:.0f} | {wall / ours:.2f} |")
    lines += ["", "Goal: sparkify's whole job at least 1.25x faster than the faster parser alone; "
              f"measured {min(peers) / ours:.2f}x."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sparkify", required=True, help="the sparkify binary")
    ap.add_argument("--scales", default="1,10,100")
    ap.add_argument("--work", default=None, help="where generated data goes (default: a temp dir)")
    ap.add_argument("--tools", default="sparkify,duckdb,polars")
    ap.add_argument("--events-scale", type=int, default=100,
                    help="the events-only comparison: the real logs copied this many times (0: skip)")
    ap.add_argument("--runs", type=int, default=3,
                    help="measured runs per tool and scale, after one to warm the cache; "
                         "the table shows their median and range")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="sparkify-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    tools = args.tools.split(",")

    plan_dir = work / "plan"
    write_jobs(args.sparkify, plan_dir)

    rows = []
    floors = []
    for scale in [int(s) for s in args.scales.split(",")]:
        root = generated(args.sparkify, work, scale)
        size = data_bytes(root)
        results = {}
        cmds = whole_jobs(args.sparkify, root, work, plan_dir, tools, scale)

        # The median wall time of the rounds, the highest RSS.
        all_runs = in_rounds({tool: cmd for tool, (cmd, _, _) in cmds.items()}, max(1, args.runs),
                             lambda tool: fresh(cmds[tool][1]))
        for tool, (cmd, db, summary) in cmds.items():
            runs = all_runs[tool]
            walls = sorted(r[0] for r in runs)
            wall = statistics.median(walls)
            rss = max(r[1] for r in runs)
            out = runs[-1][2]
            if tool == "sparkify":
                counts = json.loads(summary.read_text())["rows"]
            else:
                counts = json.loads(out.strip().splitlines()[-1])
            results[tool] = (wall, (walls[0], walls[-1]), rss, {t: counts[t] for t in STAR})
            print(f"{scale}x {tool}: {wall:.2f} s ({walls[0]:.2f}–{walls[-1]:.2f}), {size / wall / 1e6:.1f} MB/s, {rss:.0f} MiB", flush=True)
            if tool == "sparkify":
                floor = float(subprocess.run([sys.executable, str(plan_dir / "floor_job.py"), str(db)],
                                             check=True, capture_output=True, text=True).stdout)
                floors.append((scale, size, counts["staging_events"], floor, wall))
        for tool, (wall, spread, rss, counts) in results.items():
            ratio = results["sparkify"][0] / wall if "sparkify" in results else float("nan")
            same = "yes" if "sparkify" not in results or counts == results["sparkify"][3] else f"no: {counts}"
            rows.append((scale, size, tool, wall, spread, size / wall / 1e6, rss, ratio, same))

    n = max(1, args.runs)
    lines = [f"| scale | input MB | tool | wall s (median of {n}) | range s | MB/s | peak RSS MiB | sparkify time / tool time | star-schema row counts equal sparkify's |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for scale, size, tool, wall, (lo, hi), mbs, rss, ratio, same in rows:
        lines.append(f"| {scale}x | {size / 1e6:.1f} | {tool} | {wall:.2f} | {lo:.2f}–{hi:.2f} | {mbs:.1f} | {rss:.0f} | {ratio:.2f} | {same} |")
    if floors:
        lines += ["", "| scale | staging_events rows | DuckDB copying them into a new table, s | ceiling for any tool loading DuckDB, MB/s | share of sparkify's wall time |",
                  "|---:|---:|---:|---:|---:|"]
        for scale, size, n, floor, wall in floors:
            lines.append(f"| {scale}x | {n} | {floor:.2f} | {size / floor / 1e6:.0f} | {floor / wall:.0%} |")
    table = "\n".join(lines)
    if args.events_scale > 0:
        table += "\n\n" + events_only(args, work, plan_dir)
    print(table)
    (OUT / "compare.md").write_text(table + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        scales = sorted({r[0] for r in rows})
        width = 0.8 / len(tools)
        for i, tool in enumerate(tools):
            vals = [next((r[5] for r in rows if r[0] == s and r[2] == tool), 0) for s in scales]
            ax.bar([x + i * width for x in range(len(scales))], vals, width, label=tool)
        ax.set_xticks([x + width * (len(tools) - 1) / 2 for x in range(len(scales))])
        ax.set_xticklabels([f"{s}x" for s in scales])
        ax.set_ylabel("MB/s (higher is better)")
        ax.set_title("JSON to star schema in DuckDB, 2 cores")
        ax.legend()
        fig.tight_layout()
        fig.savefig(OUT / "compare.png", dpi=100)
    except ImportError:
        print("matplotlib missing: no chart", file=sys.stderr)


if __name__ == "__main__":
    main()
