#!/bin/sh
# The builder's loop, timed: for each language's `metered` template, the wall time from an
# edit to a `nexus plugin test` result (`nexus build && nexus plugin test`, what a
# `nexus dev` round runs), for a handler edit and for a test-only edit, with this build's
# defaults (input-keyed builds, Winch locally) and with the old behaviour (every round
# rebuilds, Cranelift compiles), in turns in the same run.
#
#   tools/builder-loop/bench.sh [path/to/nexus] [runs]
#
# Needs python3 (venv) and npm; downloads componentize-py and componentize-js once into
# the scratch folder. Prints one line per measurement, then the medians.
set -eu
NEXUS=$(realpath "${1:-target/release/nexus}")
RUNS=${2:-3}
SCRATCH=${BENCH_DIR:-/tmp/nexus-builder-loop}
mkdir -p "$SCRATCH"
export XDG_CACHE_HOME="$SCRATCH/cache" NEXUS_CONFIG_DIR="$SCRATCH/config"
export CARGO_TARGET_DIR="$SCRATCH/cargo-target"

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

# edit <lang>: a change to the handler that keeps every case passing (a comment line).
edit() {
  case $1 in
    rust) echo "// edited $(now)" >> src/lib.rs ;;
    python) echo "# edited $(now)" >> src/app.py ;;
    js) echo "// edited $(now)" >> src/index.js ;;
  esac
}

round() { "$NEXUS" build >/dev/null 2>&1 && "$NEXUS" plugin test >/dev/null 2>&1; }

for lang in rust python js; do
  project="$SCRATCH/loop-$lang"
  rm -rf "$project"
  (cd "$SCRATCH" && "$NEXUS" new "loop-$lang" --lang "$lang" --template metered >/dev/null)
  cd "$project"
  round || { echo "$lang: the first build failed"; exit 1; }
  for run in $(seq "$RUNS"); do
    for mode in new old; do
      if [ "$mode" = old ]; then export NEXUS_COMPILER=cranelift; else export NEXUS_COMPILER=winch; fi
      edit "$lang"
      [ "$mode" = old ] && rm -f .nexus/build.json
      start=$(now); round; echo "$lang handler $mode $(elapsed "$start")"
      touch events/count-words.json
      [ "$mode" = old ] && rm -f .nexus/build.json
      start=$(now); round; echo "$lang tests-only $mode $(elapsed "$start")"
    done
  done
  cd "$SCRATCH"
done
