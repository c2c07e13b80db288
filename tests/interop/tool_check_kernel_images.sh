#!/usr/bin/env bash
# `pcache check` and `pcache dump` on every kernel-written image: check must report it clean
# (exit 0), dump must decode it fully (valid JSON with every kset the inspect file lists).
# Usage: tool_check_kernel_images.sh PCACHE_BINARY DATA_DIR
set -euo pipefail
pcache=$1
data=$2
work=$(mktemp -d /dev/shm/pcache-interop-XXXXXX)
trap 'rm -rf "$work"' EXIT
for name in basic_clean_crc basic_crash_crc writeback_crc; do
    zstd -q -d -f "$data/$name.pmem.img.zst" -o "$work/$name.pmem"       # sparse output
    zstd -q -d -f "$data/$name.backing.img.zst" -o "$work/$name.backing"
    if ! out=$("$pcache" check --pmem "$work/$name.pmem" --backing "$work/$name.backing" 2>&1); then
        echo "FAIL: pcache check reported problems on the kernel image $name:"; echo "$out"; exit 1
    fi
    "$pcache" dump --pmem "$work/$name.pmem" --backing "$work/$name.backing" > "$work/$name.json"
    want=$(grep -c '^kset .*key_num=' "$data/$name.inspect.txt")
    python3 - "$work/$name.json" "$want" "$name" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
want, name = int(sys.argv[2]), sys.argv[3]
text = json.dumps(doc)
# Every normal kset of the inspect file must be in the dump, with its keys.
def walk(o):
    if isinstance(o, dict):
        yield o
        for v in o.values(): yield from walk(v)
    elif isinstance(o, list):
        for v in o: yield from walk(v)
ksets = [o for o in walk(doc) if isinstance(o.get("keys"), list)]
if len(ksets) < want:
    sys.exit(f"FAIL: dump of {name} lists {len(ksets)} ksets with keys, the inspect file {want}")
print(f"{name}: check clean, dump decodes {len(ksets)} ksets")
PY
done
