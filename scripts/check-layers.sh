#!/bin/sh
# check-layers.sh: the layers of src/ include only downwards
# (docs/design.md, "Layers"). Every quoted #include of a file under src/
# is checked against the table below; an include of a higher layer, or of a
# lower-layered file's sibling that the layer may not see, fails.
#
#   base     src/base                           gms.h only
#   backend  src/backend, src/kernels           + base
#   audit    src/audit                          + base
#   pool     src/core/pool.h, handle.c,         + base, backend, audit
#            tlsf.c, pool.c, services.c
#   safety   src/safety                         + pool
#   core     the rest of src/core               + safety
#
# Usage: scripts/check-layers.sh [SRC_DIR]   (default: src next to scripts/)
set -u
src=${1:-$(dirname "$0")/../src}

# The layer of a path relative to src/.
layer_of() {
    case $1 in
    base/*) echo base ;;
    backend/* | kernels/*) echo backend ;;
    audit/*) echo audit ;;
    core/pool.h | core/handle.c | core/tlsf.c | core/pool.c | core/services.c) echo pool ;;
    safety/*) echo safety ;;
    core/*) echo core ;;
    *) echo unknown ;;
    esac
}

# The layers a layer may include (itself among them).
allowed() {
    case $1 in
    base) echo "base" ;;
    backend) echo "base backend" ;;
    audit) echo "base audit" ;;
    pool) echo "base backend audit pool" ;;
    safety) echo "base backend audit pool safety" ;;
    core) echo "base backend audit pool safety core" ;;
    esac
}

checked=0
failed=0
for file in $(cd "$src" && find . -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cpp' \) | sed 's|^\./||' | sort); do
    from=$(layer_of "$file")
    ok=$(allowed "$from")
    dir=$(dirname "$file")
    # Quoted includes; <...> ones are system headers.
    for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$src/$file"); do
        case $inc in
        gms.h | gms/*) continue ;; # the public API: every layer may use it
        esac
        # An include without a folder is the including file's neighbour.
        case $inc in
        */*) target=$inc ;;
        *) target=$dir/$inc ;;
        esac
        [ -f "$src/$target" ] || continue # not under src/ (a driver's header)
        to=$(layer_of "$target")
        checked=$((checked + 1))
        case " $ok " in
        *" $to "*) ;;
        *)
            echo "src/$file ($from) includes $inc ($to): $from may include only: $ok"
            failed=$((failed + 1))
            ;;
        esac
    done
done
echo "$((checked - failed)) passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$checked" -gt 0 ]
