#!/usr/bin/env bash
# Lists the public functions of src/ that nothing outside their own file uses.
#
#   scripts/deadapi.sh [BUILD_DIR]     BUILD_DIR defaults to build/rel; it must
#                                      hold the objects of a build (make)
#
# A global function counts as used when an object file other than the one that
# defines it references it (the linker's view of src/), or when its name
# appears in tests/ or bench/. Anything else is either dead or should be
# static. A function only its own file uses counts when that file refers to it
# beyond its definition and no public header declares it. Prints "FILE NAME" per finding and exits 1 when it found any.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/rel}
[ -d "$build/obj/src" ] || { echo "deadapi: $build/obj/src: no objects; run make first" >&2; exit 2; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for o in $(find "$build/obj/src" -name '*.o' | sort); do
    src=${o#"$build/obj/"}
    [ -f "${src%.o}.c" ] || continue # left over from a file since removed
    nm -g --defined-only "$o" | awk -v f="$o" '$2=="T"{print $3, f}' >> "$tmp/defs"
    nm -u "$o" | awk -v f="$o" '{print $2, f}' >> "$tmp/refs"
done
grep -rhoE '\b[a-z_][a-z0-9_]*\b' tests bench 2>/dev/null | sort -u > "$tmp/words"
status=0
while read -r name file; do
    [ "$name" = main ] && continue
    if awk -v n="$name" -v f="$file" '$1==n && $2!=f{found=1} END{exit !found}' "$tmp/refs"; then continue; fi
    if grep -qxF "$name" "$tmp/words"; then continue; fi
    src=${file#"$build/obj/"}; src=${src%.o}.c
    # a function only its own file uses is dead unless the file refers to it
    # beyond its definition (a table of kernels, say) and no public header
    # (src/<module>/<module>.h) declares it
    mod=$(basename "$(dirname "$src")")
    if [ "$(grep -cw "$name" "$src")" -gt 1 ] && ! grep -qw "$name" "src/$mod/$mod.h"; then continue; fi
    echo "$src $name"; status=1
done < "$tmp/defs"
exit $status
