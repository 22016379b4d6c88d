#!/usr/bin/env bash
# End-to-end test of the `fathom` command-line tool: every subcommand on small generated data,
# checking outputs, exit codes and error messages.
#
#   bash tests/cli/cli_test.sh path/to/fathom
#
# Needs bash and python3 (standard library only: it writes the .npy/.fvecs inputs and reads the
# --json outputs). Works in a temporary directory that is removed on exit.
set -euo pipefail

if [[ $# -ne 1 || ! -x "$1" ]]; then
  echo "usage: $0 PATH_TO_FATHOM_BINARY" >&2
  exit 2
fi
BIN=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
T=$(mktemp -d "${TMPDIR:-/tmp}/fathom-cli-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T"
export FATHOM_DATA="$T/db"   # the default --data for every command below
unset FATHOM_API_KEY || true

CHECKS=0
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
pass() { CHECKS=$((CHECKS + 1)); }

fathom() { "$BIN" "$@"; }

expect_eq() {  # ACTUAL EXPECTED WHAT
  [[ "$1" == "$2" ]] || fail "$3: expected '$2', got '$1'"
  pass
}

expect_contains() {  # HAYSTACK NEEDLE WHAT
  [[ "$1" == *"$2"* ]] || fail "$3: expected to contain '$2', got: $1"
  pass
}

expect_not_contains() {  # HAYSTACK NEEDLE WHAT
  [[ "$1" != *"$2"* ]] || fail "$3: expected not to contain '$2', got: $1"
  pass
}

# expect_error EXIT_CODE MESSAGE_PART COMMAND...: the command fails with that exit code and one
# "error: ..." line on stderr that contains MESSAGE_PART.
expect_error() {
  local want_rc=$1 want_msg=$2 rc=0 err
  shift 2
  err=$("$@" 2>&1 >/dev/null) || rc=$?
  [[ $rc -eq $want_rc ]] || fail "'$*': expected exit $want_rc, got $rc (stderr: $err)"
  [[ "$err" == "error: "* ]] || fail "'$*': stderr should start with 'error: ', got: $err"
  [[ "$err" == *"$want_msg"* ]] || fail "'$*': expected '$want_msg' in the error, got: $err"
  pass
}

# json_get EXPRESSION: evaluates a Python expression over the JSON document on stdin (bound to d).
json_get() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

# --- generated data -----------------------------------------------------------------------------

# 100 points in 4-D: point i is [i, i % 7, i % 3, 1], so point 42 is [42, 0, 0, 1].
python3 - <<'EOF'
import json
with open("grid.jsonl", "w") as f:
    for i in range(100):
        f.write(json.dumps({"id": i, "vector": [i, i % 7, i % 3, 1],
                            "payload": {"label": i % 5, "color": "red" if i % 2 == 0 else "blue",
                                        "name": "p%d" % i}}) + "\n")
EOF

# 50 random 8-D rows as float32 .npy (format 1.0, written without NumPy) and two of them as fvecs.
python3 - <<'EOF'
import random, struct
random.seed(7)
rows, cols = 50, 8
data = [[random.gauss(0, 1) for _ in range(cols)] for _ in range(rows)]
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (rows, cols)
header += " " * (63 - (10 + len(header)) % 64) + "\n"
with open("mat.npy", "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    for row in data:
        f.write(struct.pack("<%df" % cols, *row))
with open("q.fvecs", "wb") as f:
    for row in (data[7], data[31]):
        f.write(struct.pack("<i", cols) + struct.pack("<%df" % cols, *row))
EOF

cat > multi.jsonl <<'EOF'
{"id": "a", "vectors": {"image": [1, 0, 0], "text": [1, 0]}, "payload": {"tag": "x"}}
{"id": "b", "vectors": {"image": [0, 1, 0], "text": [0, 1]}, "payload": {"tag": "y"}}

{"id": "7", "vectors": {"image": [0, 0, 1], "text": [0.7, 0.7]}}
EOF

# Lines 1-4 are good, line 5 is cut off: with --batch 2, lines 1-4 land in two batches first.
cat > bad.jsonl <<'EOF'
{"id": 500, "vector": [1, 2, 3, 4]}
{"id": 501, "vector": [1, 2, 3, 4]}
{"id": 502, "vector": [1, 2, 3, 4]}
{"id": 503, "vector": [1, 2, 3, 4]}
{"id": 504, "vector": [1, 2, 3
{"id": 505, "vector": [1, 2, 3, 4]}
EOF
printf '{"id": 600, "vector": [1, 2, 3, 4]}\n{"id": 601, "vector": [1, 2, 3]}\n' > wrongdim.jsonl

# --- usage --------------------------------------------------------------------------------------

out=$(fathom --help)
expect_contains "$out" "bench" "top-level help lists subcommands"
expect_error 1 "subcommand" fathom
expect_error 1 "" fathom frobnicate
expect_error 2 "no database" fathom list

# --- create / list / info -----------------------------------------------------------------------

out=$(fathom create grid --dim 4 --metric l2 --index HNSW32 --field label:integer --field color:keyword)
expect_contains "$out" "created collection 'grid'" "create"
fathom create mat --dim 8 --metric cosine --index Flat >/dev/null
fathom create multi --vector image:3:l2:Flat --vector text:2:cosine:HNSW16 --field tag:keyword >/dev/null
expect_error 1 "already exists" fathom create grid --dim 4
expect_error 1 "a/b" fathom create a/b --dim 4
expect_error 1 "field type" fathom create f1 --dim 4 --field label:int
expect_error 1 "unknown metric" fathom create f2 --dim 4 --metric hamming
expect_error 1 "" fathom create f3 --dim 4 --vector x:4
expect_error 1 "--dim" fathom create f4

out=$(fathom list)
expect_contains "$out" "grid" "list shows grid"
expect_contains "$out" "multi" "list shows multi"
expect_eq "$(fathom list --json | json_get 'sorted(c["name"] for c in d)')" \
  "['grid', 'mat', 'multi']" "list --json names"

# --- import -------------------------------------------------------------------------------------

out=$(fathom import grid grid.jsonl --batch 32 2>/dev/null)
expect_contains "$out" "imported 100 points in" "import jsonl summary"
expect_contains "$out" "points/s)" "import throughput"
expect_eq "$(fathom count grid)" "100" "count after jsonl import"

out=$(fathom import mat mat.npy --id-start 1000 2>/dev/null)
expect_contains "$out" "imported 50 points" "import npy summary"
expect_eq "$(fathom count mat)" "50" "count after npy import"

out=$(fathom import multi multi.jsonl 2>/dev/null)
expect_contains "$out" "imported 3 points" "import named vectors (blank line skipped)"

expect_error 1 "line 5" fathom import grid bad.jsonl --batch 2
expect_eq "$(fathom count grid)" "104" "batches before a malformed line stay imported"
fathom delete grid 500 501 502 503 >/dev/null
expect_error 1 "line 2" fathom import grid wrongdim.jsonl
expect_error 1 "expects 4" fathom import grid wrongdim.jsonl
expect_error 1 "expects 4" fathom import grid mat.npy
expect_error 1 "unknown file type" fathom import grid grid.csv
expect_error 2 "no such file" fathom import grid missing.jsonl
printf 'not a numpy file' > garbage.npy
expect_error 1 "garbage.npy" fathom import grid garbage.npy
expect_error 2 "does not exist" fathom import nope grid.jsonl
expect_eq "$(fathom count grid)" "100" "failed imports left grid unchanged"

# JSON Lines from standard input, .bvecs (uint8 rows) and IDX (Fashion-MNIST's format: 2x2 images).
fathom create other --dim 4 --metric l2 --index Flat >/dev/null
printf '%s\n' '{"id": "s1", "vector": [1, 2, 3, 4], "payload": {"from": "stdin"}}' \
  '{"id": "s2", "vector": [4, 3, 2, 1]}' | fathom import other - >/dev/null 2>&1
expect_eq "$(fathom get other s1 --string-id --json | json_get 'd[0]["payload"]["from"]')" "stdin" "import from stdin"
python3 - <<'EOF'
import struct
with open("rows.bvecs", "wb") as f:
    for row in ([9, 8, 7, 6], [255, 0, 1, 2]):
        f.write(struct.pack("<i", 4) + bytes(row))
with open("tiny-idx3-ubyte", "wb") as f:  # magic 0x00000803: unsigned bytes, 3 dimensions
    f.write(struct.pack(">iiii", 0x803, 3, 2, 2) + bytes([1, 2, 3, 4, 5, 6, 7, 8, 10, 20, 30, 40]))
EOF
fathom import other rows.bvecs --id-start 100 >/dev/null 2>&1
expect_eq "$(fathom get other 101 --json | json_get 'd[0]["vectors"][""]')" "[255.0, 0.0, 1.0, 2.0]" "import .bvecs"
fathom import other tiny-idx3-ubyte --id-start 200 >/dev/null 2>&1
expect_eq "$(fathom get other 202 --json | json_get 'd[0]["vectors"][""]')" "[10.0, 20.0, 30.0, 40.0]" "import IDX"
expect_eq "$(fathom count other)" "7" "stdin + bvecs + IDX"
# String ids on search and delete.
expect_eq "$(fathom search other --id s2 --string-id -k 1 --json | json_get 'd["results"][0]["id"]')" "s2" \
  "search by a string id"
fathom delete other s1 --string-id >/dev/null
expect_eq "$(fathom count other)" "6" "delete by a string id"

# --- info ---------------------------------------------------------------------------------------

out=$(fathom info grid)
expect_contains "$out" "points      100" "info points"
expect_contains "$out" "label: integer" "info field"
expect_contains "$out" "RAM  " "info RAM"
expect_contains "$out" "index files" "info disk parts"
expect_eq "$(fathom info multi --json | json_get '[(v["name"], v["dim"], v["metric"]) for v in d["vectors"]]')" \
  "[('image', 3, 'l2'), ('text', 2, 'cosine')]" "info --json vectors"
expect_error 2 "nope" fathom info nope

# Metadata: which model made the vectors, kept with the collection and shown by info.
fathom create described --dim 2 --metadata '{"model": {"name": "resnet50", "version": "2"}}' >/dev/null
expect_contains "$(fathom info described)" 'metadata    {"model":{"name":"resnet50","version":"2"}}' "info metadata"
expect_eq "$(fathom info described --json | json_get 'd["metadata"]["model"]["version"]')" "2" "info --json metadata"
expect_error 1 "--metadata must be a JSON object" fathom create described2 --dim 2 --metadata '[1]'
expect_error 2 "described2" fathom info described2

# tune: the cheapest ef that reaches the target becomes the default (kept: info and the next run).
out=$(fathom tune grid --target-recall 0.9 --sample 50)
expect_contains "$out" "target reached: ef=" "tune reaches the target"
expect_eq "$(fathom tune grid --target-recall 0.9 --sample 50 --json | json_get 'd["reached"] and d["recall"] >= 0.9')" "True" "tune --json"
expect_error 1 "target-recall" fathom tune grid --target-recall 2
expect_contains "$(fathom info grid)" "(fathom tune: target recall 0.900" "info shows the tuned default"
expect_contains "$(fathom tune grid --reset)" "tuned default forgotten" "tune --reset"
expect_eq "$(fathom tune grid --reset --json | json_get 'd["reset"]')" "False" "tune --reset twice"
expect_not_contains "$(fathom info grid)" "fathom tune:" "info after tune --reset"
# --values measures the settings given; --dry-run keeps the default as it was.
expect_eq "$(fathom tune grid --values 64,8 --dry-run --sample 50 --json | json_get 'sorted(t["value"] for t in d["tried"])')" "[8, 64]" "tune --values"
expect_not_contains "$(fathom info grid)" "fathom tune:" "tune --dry-run stores nothing"
expect_contains "$(fathom tune grid --values 8 --dry-run --sample 50)" "not stored (--dry-run)" "tune --dry-run says so"
expect_error 1 "values" fathom tune grid --values 0

# Vectors on disk: floats in a file, codes in RAM; info says where each part lives.
fathom create disky --dim 8 --metric cosine --index HNSW16,SQ8 --on-disk --on-disk-payload >/dev/null
fathom import disky mat.npy 2>/dev/null >/dev/null
out=$(fathom info disky)
expect_contains "$out" "floats on disk (codes in RAM)" "info says the floats are on disk"
expect_contains "$out" "on disk (record store only)" "info says the payloads are on disk"
expect_eq "$(fathom info disky --json | json_get 'd["storage"]["vectors_disk_bytes"] >= 50 * 8 * 4 and d["vectors"][0]["on_disk"]')" \
  "True" "info --json reports the vector file's bytes"
expect_eq "$(fathom search disky --vector-file mat.npy --row 7 -k 1 --json | json_get 'd["results"][0]["id"]')" "7" \
  "on-disk collection finds a point by its own vector"
expect_error 1 "on_disk keeps float vectors on disk" fathom create f5 --dim 4 --index HNSW16 --on-disk
fathom drop disky >/dev/null

# --- count with filters -------------------------------------------------------------------------

expect_eq "$(fathom count grid --filter 'label = 3')" "20" "count label = 3"
expect_eq "$(fathom count grid --filter 'color = "red" AND label = 3')" "10" "count red AND label 3"
expect_eq "$(fathom count grid --filter '{"must": [{"key": "label", "match": {"value": 0}}]}')" \
  "20" "count with a JSON filter"
expect_error 1 "" fathom count grid --filter 'label ='

# --- search -------------------------------------------------------------------------------------

out=$(fathom search grid --id 42 -k 5)
expect_eq "$(echo "$out" | awk 'NR == 2 {print $1, $2, $3}')" "1 42 0" "search --id: self first at distance 0"
expect_eq "$(echo "$out" | wc -l | tr -d ' ')" "6" "search -k 5 prints a header and 5 rows"
expect_contains "$out" '"name":"p42"' "search shows payloads"

json=$(fathom search grid --id 42 -k 5 --json)
expect_eq "$(echo "$json" | json_get '(d["results"][0]["id"], d["results"][0]["distance"])')" "(42, 0.0)" \
  "search --id --json"
expect_eq "$(echo "$json" | json_get 'len(d["results"])')" "5" "search --json -k 5"

# Search knobs shared with REST params and Python: --rerank, --nprobe, --upper-ef.
json=$(fathom search grid --id 42 -k 5 --ef 64 --rerank 40 --upper-ef 16 --json)
expect_eq "$(echo "$json" | json_get '(d["results"][0]["id"], d["results"][0]["distance"])')" "(42, 0.0)" \
  "search with --rerank and --upper-ef"
expect_error 1 "--upper-ef" fathom search grid --id 42 --upper-ef -3

json=$(fathom search grid --id 42 -k 10 --filter 'label = 3' --json)
expect_eq "$(echo "$json" | json_get 'len(d["results"])')" "10" "filtered search fills k"
expect_eq "$(echo "$json" | json_get 'sorted(set(r["payload"]["label"] for r in d["results"]))')" "[3]" \
  "filter restricts results"
expect_eq "$(echo "$json" | json_get '42 in [r["id"] for r in d["results"]]')" "False" \
  "filtered search drops the query point, whose label is 2"

# recommend: more like 21 and 63 (their mean is point 42's vector), examples never returned.
json=$(fathom recommend grid --positive 21,63 -k 3 --json)
expect_eq "$(echo "$json" | json_get '[r["id"] for r in d["results"]][0]')" "42" "recommend: the mean of the positives"
expect_eq "$(echo "$json" | json_get '21 in [r["id"] for r in d["results"]] or 63 in [r["id"] for r in d["results"]]')" \
  "False" "recommend leaves the examples out"
json=$(fathom recommend grid --positive 42 --negative 21 -k 1 --json)
expect_eq "$(echo "$json" | json_get 'd["results"][0]["id"]')" "63" "recommend: 2 x positive - negative"
json=$(fathom recommend grid --positive 42 --negative 21 --strategy best_score -k 3 --filter 'label = 3' --json)
expect_eq "$(echo "$json" | json_get 'sorted(set(r["payload"]["label"] for r in d["results"]))')" "[3]" \
  "recommend best_score with a filter"
expect_error 2 "does not exist" fathom recommend grid --positive 123456
expect_error 1 "--strategy" fathom recommend grid --positive 1 --strategy nope

# payload: merge, overwrite, delete keys, clear; by ids or filter; all or nothing.
expect_eq "$(fathom payload grid 7 8 --set '{"reviewed": true}')" "updated 2 points" "payload --set"
expect_eq "$(fathom get grid 7 --json | json_get '(d[0]["payload"]["reviewed"], d[0]["payload"]["label"])')" "(True, 2)" \
  "payload --set merges keys"
expect_eq "$(fathom count grid --filter 'reviewed = true')" "2" "payload --set is filterable"
fathom payload grid --filter 'reviewed = true' --delete-keys reviewed > /dev/null
expect_eq "$(fathom count grid --filter 'reviewed = true')" "0" "payload --delete-keys by filter"
fathom payload grid 9 --overwrite '{"label": 4}' > /dev/null
expect_eq "$(fathom get grid 9 --json | json_get 'd[0]["payload"]')" "{'label': 4}" "payload --overwrite"
expect_error 2 "no payload was changed" fathom payload grid 9 123456 --clear
expect_eq "$(fathom get grid 9 --json | json_get 'd[0]["payload"]')" "{'label': 4}" "a failed update changes nothing"
expect_error 1 "exactly one of" fathom payload grid 9 --clear --set '{"a": 1}'

# index: payload indexes added and dropped on a collection that holds points.
expect_eq "$(fathom index grid --add reviewed:bool,label2:datetime)" "$(printf 'indexed reviewed (bool)\nindexed label2 (datetime)')" \
  "index --add"
expect_contains "$(fathom info grid)" "reviewed: bool" "info lists the new index"
expect_error 1 "is indexed as bool" fathom payload grid 9 --set '{"reviewed": "yes"}'
expect_eq "$(fathom index grid --drop reviewed,label2)" "$(printf 'dropped the index on reviewed\ndropped the index on label2')" \
  "index --drop"
expect_error 2 "has no payload index on 'reviewed'" fathom index grid --drop reviewed
expect_error 1 "expected NAME:TYPE" fathom index grid --add reviewed
expect_error 1 "give --add" fathom index grid

out=$(fathom search grid --vector "42,0,0,1" -k 1)
expect_eq "$(echo "$out" | awk 'NR == 2 {print $2, $3}')" "42 0" "search --vector"
out=$(fathom search grid --vector "[-1, 0, 0, 1]" -k 1 --no-payload)
expect_eq "$(echo "$out" | awk 'NR == 2 {print $2}')" "0" "search with a negative component"
expect_not_contains "$out" "payload" "--no-payload"
json=$(fathom search grid --id 42 -k 1 --with-vectors --json)
expect_eq "$(echo "$json" | json_get 'd["results"][0]["vectors"][""]')" "[42.0, 0.0, 0.0, 1.0]" \
  "search --with-vectors"

out=$(fathom search mat --vector-file mat.npy --row 7 -k 1)
expect_eq "$(echo "$out" | awk 'NR == 2 {print $2, $3}')" "1007 0" "search --vector-file npy --row"
out=$(fathom search mat --vector-file q.fvecs --row 1 -k 1)
expect_eq "$(echo "$out" | awk 'NR == 2 {print $2}')" "1031" "search --vector-file fvecs"

out=$(fathom search multi --id a --using text -k 3)
expect_eq "$(echo "$out" | awk 'NR == 2 {print $2, $3}')" "a 0" "search named vector"
expect_eq "$(echo "$out" | awk 'NR == 3 {print $2}')" '"7"' "numeric string ids are shown quoted"
expect_error 1 "--using" fathom search multi --id a
expect_error 1 "no vector named 'audio'" fathom search multi --id a --using audio

expect_error 2 "nope" fathom search nope --id 1
expect_error 1 "dimensions" fathom search grid --vector "1,2,3"
expect_error 1 "not a number" fathom search grid --vector "1,x,3,4"
expect_error 2 "not found" fathom search grid --id 12345
expect_error 1 "exactly one query" fathom search grid
expect_error 1 "" fathom search grid --id 1 --vector "1,2,3,4"
expect_error 1 "only 50 rows" fathom search mat --vector-file mat.npy --row 50
expect_error 1 "" fathom search grid --id 1 --filter 'label = '

# --- get ----------------------------------------------------------------------------------------

json=$(fathom get grid 42 7 --json)
expect_eq "$(echo "$json" | json_get '[(r["id"], r["payload"]["name"]) for r in d]')" \
  "[(42, 'p42'), (7, 'p7')]" "get --json"
out=$(fathom get multi 7 --string-id)
expect_contains "$out" '"7"' "get --string-id"
expect_error 2 "not found" fathom get multi 7
out=$(fathom get grid 42 999 2>/dev/null) && fail "get with a missing id should fail" || true
expect_contains "$out" "p42" "get prints the points it found"
expect_error 2 "999" fathom get grid 42 999
expect_error 1 "--string-id" fathom get grid 99999999999999999999999

# --- delete -------------------------------------------------------------------------------------

expect_eq "$(fathom delete grid 1 2 3 12345)" "deleted 3 points" "delete by id counts existing ids"
expect_eq "$(fathom count grid)" "97" "count after delete"
expect_eq "$(fathom delete grid --filter 'label = 4')" "deleted 20 points" "delete by filter"
expect_eq "$(fathom count grid)" "77" "count after delete by filter"
expect_eq "$(fathom count grid --filter 'label = 4')" "0" "no label 4 left"
json=$(fathom search grid --vector "2,2,2,1" -k 10 --json)
expect_eq "$(echo "$json" | json_get 'sorted(set([1, 2, 3, 4, 9, 14]) & set(r["id"] for r in d["results"]))')" \
  "[]" "deleted points are never returned"
expect_error 1 "" fathom delete grid
expect_error 1 "" fathom delete grid 5 --filter 'label = 1'

# --- snapshot / restore -------------------------------------------------------------------------

out=$(fathom snapshot grid "$T/snap")
expect_contains "$out" "77 points" "snapshot"
expect_error 1 "already exists" fathom snapshot grid "$T/snap"
out=$(fathom restore "$T/snap" --name grid_copy)
expect_contains "$out" "grid_copy" "restore --name"
expect_eq "$(fathom count grid_copy)" "77" "restored copy count"
out=$(fathom search grid_copy --id 42 -k 1)
expect_eq "$(echo "$out" | awk 'NR == 2 {print $2, $3}')" "42 0" "restored copy searches"
expect_error 1 "already exists" fathom restore "$T/snap"
out=$(fathom --data "$T/db2" restore "$T/snap")
expect_contains "$out" "restored collection 'grid'" "restore into a new database"
expect_eq "$(fathom count grid --data "$T/db2")" "77" "count in the new database (--data after the subcommand)"
expect_error 2 "" fathom restore "$T/no-such-snapshot"

# --- bench --------------------------------------------------------------------------------------

out=$(fathom bench grid -n 20 -k 5 --ef 8,64)
expect_contains "$out" "recall@5" "bench prints recall"
expect_contains "$out" "against exact brute-force search" "bench: recall against brute force, not the index itself"
expect_eq "$(echo "$out" | awk '$1 == "8" || $1 == "64"' | wc -l | tr -d ' ')" "2" "bench: one row per ef"
out=$(fathom bench mat --queries q.fvecs -k 3 --ef 16)
expect_contains "$out" "2 queries from" "bench --queries"
expect_eq "$(echo "$out" | awk '$1 == "16" {print $5}')" "1.0000" "bench recall on a Flat index"
expect_error 1 "expects 4" fathom bench grid --queries q.fvecs

# --- drop ---------------------------------------------------------------------------------------

expect_contains "$(fathom drop multi)" "dropped collection 'multi'" "drop"
expect_not_contains "$(fathom list)" "multi" "dropped collection is not listed"
expect_error 2 "multi" fathom drop multi
expect_error 2 "multi" fathom count multi

echo "cli_test: all $CHECKS checks passed"
