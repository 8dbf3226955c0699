#!/bin/sh
# Every API route usherd serves must be documented.
#
#   tests/routes_documented.sh USHERD REPO_ROOT
#
# Runs `USHERD --routes` (one "METHOD /path/:id" per line) and checks each
# route against
#   - REPO_ROOT/docs/openapi.yaml: the path (":id" written "{id}") under
#     `paths:`, with the method (lowercase) as an operation under it;
#   - REPO_ROOT/docs/api.md: "METHOD /path/:id" (or "/path/{id}") in a
#     heading (a line starting with #), as inline code (`METHOD /path`), or
#     alone on a line of a fenced code block.
# Lists every route missing from either file and fails if there is one.
# Plain POSIX sh and awk.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 USHERD REPO_ROOT" >&2
    exit 2
fi
usherd=$1
root=$2
openapi=$root/docs/openapi.yaml
apimd=$root/docs/api.md

for f in "$openapi" "$apimd"; do
    if [ ! -r "$f" ]; then
        echo "routes_documented: cannot read $f" >&2
        exit 1
    fi
done

tmp=${TMPDIR:-/tmp}/routes_documented.$$
mkdir "$tmp" || exit 1
trap 'rm -rf "$tmp"' EXIT HUP INT TERM

if ! "$usherd" --routes >"$tmp/routes"; then
    echo "routes_documented: '$usherd --routes' failed" >&2
    exit 1
fi
# Normalise: "METHOD /path/{id}", one per line, no blank lines.
awk 'NF == 2 { m = toupper($1); p = $2; gsub(/:id/, "{id}", p); print m " " p }
     NF != 0 && NF != 2 { print "bad line from --routes: " $0 > "/dev/stderr"; bad = 1 }
     END { exit bad }' "$tmp/routes" >"$tmp/want" || exit 1
if [ ! -s "$tmp/want" ]; then
    echo "routes_documented: '$usherd --routes' printed no routes" >&2
    exit 1
fi

# The operations in openapi.yaml: "METHOD /path" for each method key under a
# path key of the top-level `paths:` mapping (keys at any consistent indent).
awk '
    function unquote(s) {
        sub(/^[ \t]+/, "", s); sub(/[ \t]*:[ \t]*(#.*)?$/, "", s)
        if (s ~ /^".*"$/ || s ~ /^\047.*\047$/) s = substr(s, 2, length(s) - 2)
        return s
    }
    function indent(s) { match(s, /^ */); return RLENGTH }
    /^[ \t]*(#.*)?$/ { next }                       # blank or comment
    /^paths:[ \t]*(#.*)?$/ { in_paths = 1; pind = -1; path = ""; next }
    in_paths && /^[^ ]/ { in_paths = 0 }            # next top-level key
    !in_paths { next }
    {
        ind = indent($0)
        if (pind < 0) pind = ind                    # first key under paths:
        if (ind == pind) {
            key = unquote($0)
            path = key ~ /^\// ? key : ""
            mind = -1
            next
        }
        if (path == "" || ind < pind) next
        if (mind < 0) mind = ind                    # keys directly under the path
        if (ind != mind) next
        key = unquote($0)
        if (key ~ /^(get|put|post|delete|options|head|patch|trace)$/)
            print toupper(key) " " path
    }
' "$openapi" >"$tmp/openapi"

# The routes api.md names: headings, inline code spans, fenced code lines.
awk '
    function norm(s) { gsub(/:id/, "{id}", s); return s }
    function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
    # Every "METHOD /path" in s whose path ends at a non-path character.
    function scan(s,    rest, pos, m, tail) {
        rest = s
        while (match(rest, /(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) \/[A-Za-z0-9_\/{}:.-]*/)) {
            m = substr(rest, RSTART, RLENGTH)
            pos = RSTART
            tail = substr(rest, RSTART + RLENGTH, 1)
            if ((pos == 1 || substr(rest, pos - 1, 1) !~ /[A-Za-z0-9_]/) && tail !~ /[?#]/)
                print norm(m)
            rest = substr(rest, RSTART + RLENGTH)
        }
    }
    /^[ \t]*(```|~~~)/ { fenced = !fenced; next }
    fenced { print norm(trim($0)); next }
    /^#/ { line = $0; gsub(/`/, "", line); scan(line); next }
    {
        n = split($0, part, "`")
        for (i = 2; i <= n; i += 2) print norm(trim(part[i]))
    }
' "$apimd" >"$tmp/apimd"

missing=0
while IFS= read -r route; do
    where=""
    grep -Fqx -- "$route" "$tmp/openapi" || where="docs/openapi.yaml"
    if ! grep -Fqx -- "$route" "$tmp/apimd"; then
        where=${where:+$where and }docs/api.md
    fi
    if [ -n "$where" ]; then
        echo "undocumented: $route (missing from $where)"
        missing=$((missing + 1))
    fi
done <"$tmp/want"

total=$(wc -l <"$tmp/want" | tr -d ' ')
if [ "$missing" -gt 0 ]; then
    echo "routes_documented: $missing of $total routes are not documented"
    exit 1
fi
echo "routes_documented: all $total routes are in docs/openapi.yaml and docs/api.md"
exit 0
