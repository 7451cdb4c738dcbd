#!/usr/bin/env bash
# sparkify against a real Redshift Serverless workgroup, in your own AWS account:
#
#   scripts/redshift-smoke.sh            # prints what it would do and cost, creates nothing
#   scripts/redshift-smoke.sh --yes      # does it
#
# It stands up a Serverless namespace and workgroup (or uses the one you name with
# --workgroup, if it exists), loads the real Sparkify data from the public bucket
# s3://udacity-dend with COPY from JSON, runs `analytics` there, loads the same data into a
# local DuckDB file, runs `verify` across the two and compares the analytics' JSON, then
# deletes what it created (not a workgroup that was there before; --keep keeps everything).
#
# Options:
#   --yes                 go ahead (without it nothing is created and nothing is called)
#   --workgroup NAME      the workgroup (default sparkify-smoke); an existing one is reused
#   --region REGION       the AWS region (default us-west-2, the bucket's)
#   --bucket NAME         the bucket holding song_data/, log_data/ and log_json_path.json
#                         (default udacity-dend, public, read unsigned; another one is read
#                         with your credentials)
#   --cidr CIDR           the address let in to the workgroup (default: this machine's, from
#                         https://checkip.amazonaws.com, as /32)
#   --base-capacity RPUS  the workgroup's base capacity (default 8)
#   --price PRICE         dollars per RPU-hour for the estimate (default 0.375)
#   --keep                keep the workgroup, namespace and role afterwards
#   --poll SECONDS        between two looks at the workgroup's state (default 15)
#
# Needs: AWS credentials the AWS SDK finds (environment, profile, SSO); the sparkify binary
# ($SPARKIFY, else `sparkify` on PATH, else target/release/sparkify); the database password in
# PGPASSWORD for a workgroup that exists already (a new namespace gets a random one).
#
# Without an account: the AWS endpoints can be local ones (AWS_ENDPOINT_URL: moto;
# AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS), and the settings the workgroup writes can be
# overridden in the environment (SPARKIFY_REDSHIFT_HOST, _PORT, _TLS, _DATABASE, _USER) to
# load a local Redshift (sparkify-redshift-local --serverless): the test command does so.
set -euo pipefail

yes=false
workgroup=sparkify-smoke
region=us-west-2
bucket=udacity-dend
cidr=""
capacity=8
price=0.375
keep=false
poll=15
while [ $# -gt 0 ]; do
    case "$1" in
        --yes) yes=true ;;
        --workgroup) workgroup="$2"; shift ;;
        --region) region="$2"; shift ;;
        --bucket) bucket="$2"; shift ;;
        --cidr) cidr="$2"; shift ;;
        --base-capacity) capacity="$2"; shift ;;
        --price) price="$2"; shift ;;
        --keep) keep=true ;;
        --poll) poll="$2"; shift ;;
        -h|--help) sed -n '2,/^set /{/^set /d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
        *) echo "redshift-smoke.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# The most compute the run should take: the COPY of 14,896 small song files dominates.
minutes=30
cost=$(awk -v r="$capacity" -v p="$price" -v m="$minutes" 'BEGIN { printf "%.2f", r * p * m / 60 }')

whom="$cidr"
[ -n "$whom" ] || whom="this machine's address"
kept=""
if $keep; then kept=" (skipped: --keep)"; fi
cat <<EOF
This will, in the AWS account of the credentials the AWS SDK finds, region $region:
  1. sparkify cluster create --workgroup $workgroup --base-capacity $capacity
     (an IAM role reading S3, a namespace, a workgroup, an ingress rule for $whom)
  2. sparkify etl --sink redshift --copy-from json --max-errors 1000
     (COPY from s3://$bucket/song_data and log_data: 14,896 + 30 files, about 7.5 MB)
  3. sparkify analytics --sink redshift --format json
  4. sparkify etl into a local DuckDB file from the same bucket, the same analytics there
  5. sparkify verify --sink duckdb:local.duckdb --sink redshift, and the two analytics compared
  6. sparkify cluster delete --skip-final-snapshot$kept

What it costs: Redshift Serverless bills compute only while queries run, per second with a
60-second minimum, in RPU-hours. At $capacity RPUs and \$$price per RPU-hour (--price; see
https://aws.amazon.com/redshift/pricing/ for your region), $minutes minutes of compute, more
than this run should need, cost \$$cost. Storage is under 1 GB for the hours it exists
(cents); the bucket is public and in us-west-2 (no transfer charge from that region).
A workgroup kept with --keep costs nothing while idle, but its storage is billed monthly.
EOF

if ! $yes; then
    echo
    echo "Nothing was created: run again with --yes to go ahead." >&2
    exit 2
fi

sparkify="${SPARKIFY:-$(command -v sparkify || echo "$(dirname "$0")/../target/release/sparkify")}"
[ -x "$sparkify" ] || { echo "redshift-smoke.sh: no sparkify binary at $sparkify (set SPARKIFY)" >&2; exit 2; }
if [ -z "$cidr" ]; then
    cidr="$(curl -fsS https://checkip.amazonaws.com | tr -d '[:space:]')/32"
fi

work="$(mktemp -d)"
echo "working in $work"
cd "$work"
cat >sparkify.toml <<EOF
[aws]
region = "$region"
[redshift]
workgroup = "$workgroup"
copy_from = "json"
[cluster]
base_capacity = $capacity
allow_cidr = "$cidr"
[iam]
role_name = "$workgroup-s3-read"
[s3]
events = "s3://$bucket/log_data"
songs = "s3://$bucket/song_data"
jsonpaths = "s3://$bucket/log_json_path.json"
region = "us-west-2"
EOF

existed=false
if "$sparkify" cluster status >/dev/null 2>&1; then
    existed=true
    echo "workgroup $workgroup exists: reusing it, and it will be kept"
    [ -n "${PGPASSWORD:-}" ] || { echo "redshift-smoke.sh: set PGPASSWORD to its admin password" >&2; exit 2; }
else
    # Redshift's rules: 8 to 64 characters, an upper and a lower case letter and a digit.
    PGPASSWORD="Sp9$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)"
fi
export PGPASSWORD

cleanup() {
    if $keep || $existed; then
        echo "kept: workgroup $workgroup (delete it with: cd $work && $sparkify cluster delete)"
    else
        "$sparkify" cluster delete --skip-final-snapshot --poll "$poll" || echo "delete failed: run it again from $work" >&2
    fi
}
trap cleanup EXIT

started=$(date +%s)
"$sparkify" cluster create --poll "$poll"
"$sparkify" etl --sink redshift --max-errors 1000 --summary-json redshift-summary.json
"$sparkify" analytics --sink redshift --format json >redshift-analytics.json
unsigned=""
if [ "$bucket" = udacity-dend ]; then unsigned=--no-sign-request; fi
"$sparkify" etl --songs "s3://$bucket/song_data" --events "s3://$bucket/log_data" \
    $unsigned --s3-region us-west-2 --sink duckdb:local.duckdb
"$sparkify" analytics --sink duckdb:local.duckdb --format json >duckdb-analytics.json
status=0
"$sparkify" verify --sink duckdb:local.duckdb --sink redshift || status=$?
if cmp -s redshift-analytics.json duckdb-analytics.json; then
    echo "analytics: the same on Redshift and DuckDB"
else
    echo "analytics differ:" >&2
    diff redshift-analytics.json duckdb-analytics.json >&2 || true
    status=1
fi
echo "took $(( $(date +%s) - started )) s; the files are in $work"
exit "$status"
