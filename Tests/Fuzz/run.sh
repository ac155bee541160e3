#!/usr/bin/env bash
# Bounded libFuzzer run over the JSON parser, the command decoder and the token verifier.
#   Tests/Fuzz/run.sh [seconds per target, default 15] [extra libFuzzer flags...]
# Builds with swiftc (SwiftPM executables rename main) into .build-fuzz/, fuzzes each of
# the seven targets (first input byte picks it, see FuzzMain.swift) from the committed seed
# corpus, and exits non-zero on any crash, sanitizer report, leak or input slower than 1 s.
# New corpus entries go to .build-fuzz/corpus-N (never into the repository); a crashing
# input is written to .build-fuzz/crash-*.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-15}
shift || true
out=.build-fuzz
mkdir -p "$out"
flags=(-parse-as-library -O -sanitize=fuzzer,address -g -I "$out")

# One module at a time, as SwiftPM would: GatewayProtocol, GatewayCrypto (OpenSSL through
# the COpenSSL module map), GatewayAuth, OrderCore, CommunityCore, then the entry point
# linked with libFuzzer.
# Compiler output goes to a log, shown only on failure (the linker warns about every ASan
# helper symbol).
buildlog="$out/build.log"
: >"$buildlog"
build() {
  local name=$1; shift
  swiftc "${flags[@]}" -module-name "$name" -emit-module -emit-module-path "$out/$name.swiftmodule" \
    -wmo -c -o "$out/$name.o" "$@" >>"$buildlog" 2>&1
}
echo "fuzz: building (swiftc $(swiftc --version 2>&1 | head -1 | sed -E 's/.*version ([^ ]+).*/\1/'))"
start=$(date +%s)
if ! { build GatewayProtocol Sources/GatewayProtocol/*.swift &&
       build GatewayCrypto -I Sources/COpenSSL Sources/GatewayCrypto/*.swift &&
       build GatewayAuth -I Sources/COpenSSL Sources/GatewayAuth/*.swift &&
       build OrderCore Sources/OrderCore/*.swift &&
       build CommunityCore Sources/CommunityCore/*.swift &&
       build GatewayPayments -I Sources/COpenSSL Sources/GatewayPayments/*.swift &&
       swiftc "${flags[@]}" -I Sources/COpenSSL -module-name FuzzMain Tests/Fuzz/FuzzMain.swift \
         "$out/GatewayProtocol.o" "$out/GatewayCrypto.o" "$out/GatewayAuth.o" "$out/OrderCore.o" \
         "$out/CommunityCore.o" "$out/GatewayPayments.o" -lcrypto \
         -o "$out/fuzz-gateway" >>"$buildlog" 2>&1; }; then
  grep -v "Cannot export local symbol" "$buildlog" | tail -40
  echo "fuzz: build FAILED"
  exit 2
fi
echo "fuzz: built in $(( $(date +%s) - start )) s"

status=0
total=0
for target in 0 1 2 3 4 5 6; do
  corpus="$out/corpus-$target"
  mkdir -p "$corpus"
  log="$out/fuzz-$target.log"
  # The seed corpus is read-only input; libFuzzer writes what it finds to the first dir.
  set +e
  SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    "$out/fuzz-gateway" "$corpus" "Tests/Fuzz/corpus/$target" \
    -max_total_time="$seconds" -timeout=1 -rss_limit_mb=1024 -max_len=70000 \
    -print_final_stats=1 -artifact_prefix="$out/" "$@" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -E "^stat::number_of_executed_units" "$log" | awk '{print $2}')
  total=$(( total + ${runs:-0} ))
  echo "fuzz: target $target: exit $rc, $(grep -E '^stat::number_of_executed_units' "$log" || echo 'no stats')"
  if [ "$rc" -ne 0 ]; then
    status=1
    grep -E "ERROR|==[0-9]+==|Fatal|SUMMARY|artifact|Test unit written" "$log" | head -20 || true
  fi
done
echo "fuzz: $total executions in all, $([ "$status" -eq 0 ] && echo "no crashes" || echo "FAILED: see $out/fuzz-*.log")"
exit "$status"
