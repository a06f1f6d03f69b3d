#!/bin/sh
# The Debian package (cmake/RecoverydPackage.cmake) made from this build by
# CPack, the way `make deb` makes it from its own: its control fields and
# dependencies, its files (dpkg -x into a temporary root), conffiles, the
# maintainer scripts (sh -n, and the user they make), the unit
# (systemd-analyze verify with the binary resolved in the root, and
# systemd-analyze security under 4), the packaged daemon's --check-config of
# the packaged config, and, where apt-get is, that apt could install it here.
# Exits 77 (skipped) without dpkg-deb, dpkg-shlibdeps or systemd-analyze.
#   test_deb.sh CPACK BUILD_DIR
set -eu
cpack=${1:?usage: test_deb.sh CPACK BUILD_DIR}
build=${2:?usage: test_deb.sh CPACK BUILD_DIR}
for t in dpkg-deb dpkg-shlibdeps systemd-analyze; do
    if ! command -v "$t" >/dev/null 2>&1; then
        echo "SKIP: $t is not installed (dpkg-dev, systemd)" >&2
        exit 77
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rd-deb-XXXXXX")
cleanup() { if [ -z "${RDT_KEEP:-}" ]; then rm -rf "$tmp"; else echo "kept $tmp" >&2; fi; }
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

"$cpack" --config "$build/CPackConfig.cmake" -G DEB -B "$tmp/pkg" >"$tmp/cpack.log" 2>&1 ||
    { cat "$tmp/cpack.log" >&2; fail "cpack -G DEB failed"; }
set -- "$tmp"/pkg/recoveryd_*_*.deb
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
    fail "expected one recoveryd_VERSION_ARCH.deb, got: $*"
fi
deb=$1

# Control fields: the package, the user's tools and the runtime libraries
# (dpkg-shlibdeps), and no libraft: the patched one is linked statically.
[ "$(dpkg-deb -f "$deb" Package)" = recoveryd ] || fail "Package is not recoveryd"
depends=$(dpkg-deb -f "$deb" Depends)
for d in adduser init-system-helpers procps libuv1 libh2o0.13 libluajit-5.1-2 libyaml-0-2 \
    libjansson4 libpq5 libzstd1 libcurl4 libssl3 liblz4-1 libsystemd0; do
    echo "$depends" | tr ',|' '\n' | sed 's/^ *//; s/ .*//' | grep -qx "$d" ||
        fail "Depends lacks $d: $depends"
done
case $depends in *libraft*) fail "Depends names libraft: $depends" ;; esac

root=$tmp/root
ctrl=$tmp/control
dpkg -x "$deb" "$root"
dpkg-deb -e "$deb" "$ctrl"
plugins=$(cd "$root" && find usr/lib -type d -path '*/recoveryd/plugins')
[ -n "$plugins" ] || fail "no usr/lib/.../recoveryd/plugins in the package"
for f in usr/bin/recoveryd etc/recoveryd/recoveryd.yaml etc/recoveryd/policies/select.lua \
    usr/lib/systemd/system/recoveryd.service usr/lib/sysusers.d/recoveryd.conf \
    usr/share/man/man8/recoveryd.8 usr/include/recoveryd/plugin.h \
    usr/include/recoveryd/error.h "$plugins/heartbeat.so" "$plugins/webhook.so"; do
    [ -f "$root/$f" ] || fail "not in the package: /$f"
done
find "$root" -path '*/pkgconfig/recoveryd-plugin.pc' | grep -q . || fail "no recoveryd-plugin.pc"
[ -x "$root/usr/bin/recoveryd" ] || fail "/usr/bin/recoveryd is not executable"
if find "$root" -name 'recoveryd-fi' -o -name 'minimal_detector.so' | grep -q .; then
    fail "test-only files in the package"
fi

# conffiles: every file under /etc, and only those.
(cd "$root" && find etc -type f | sed 's|^|/|' | sort) >"$tmp/etc.list"
sort "$ctrl/conffiles" >"$tmp/conffiles.list"
cmp -s "$tmp/etc.list" "$tmp/conffiles.list" ||
    fail "conffiles differ from the files under /etc: $(diff "$tmp/etc.list" "$tmp/conffiles.list")"

# A shared library in the package (the client library) gets ldconfig run.
if find "$root/usr/lib" -name 'lib*.so.*' | grep -q .; then
    grep -qx 'activate-noawait ldconfig' "$ctrl/triggers" || fail "shared libraries but no ldconfig trigger"
fi

# Maintainer scripts: valid sh, executable; postinst makes the system user.
for s in postinst prerm postrm; do
    [ -x "$ctrl/$s" ] || fail "no executable $s"
    sh -n "$ctrl/$s" || fail "$s: sh -n failed"
done
sed -e ':a' -e '/\\$/N; s/\\\n *//; ta' "$ctrl/postinst" |
    grep -q '^ *adduser --system --group .* recoveryd$' ||
    fail "postinst does not make the recoveryd system user"
grep -q '^User=recoveryd$' "$root/usr/lib/systemd/system/recoveryd.service" ||
    fail "the unit does not run as recoveryd"

# The config names the packaged paths; the packaged daemon accepts it (the
# absolute paths redirected into the root by the flags that override them).
conf=$root/etc/recoveryd/recoveryd.yaml
grep -q "^  dir: /$plugins " "$conf" || fail "plugins.dir is not /$plugins"
grep -q "^  dir: /etc/recoveryd/policies " "$conf" || fail "policies.dir is not /etc/recoveryd/policies"
grep -q "^  data_dir: /var/lib/recoveryd " "$conf" || fail "storage.data_dir is not /var/lib/recoveryd"
grep -q "^  ui_dir: /usr/share/recoveryd/ui " "$conf" || fail "server.ui_dir is not /usr/share/recoveryd/ui"
[ -r "$root/usr/share/recoveryd/ui/index.html" ] || fail "the dashboard's files are not in the package"
"$root/usr/bin/recoveryd" --check-config --config "$conf" --plugins-dir "$root/$plugins" \
    --policies-dir "$root/etc/recoveryd/policies" --ui-dir "$root/usr/share/recoveryd/ui" \
    >"$tmp/check.log" 2>&1 ||
    { cat "$tmp/check.log" >&2; fail "the packaged daemon rejects the packaged config"; }

# The unit: systemd-analyze verify prints nothing (it warns about a bad
# directive with exit code 0), the daemon's path resolved in the root; and
# the sandbox rates under 4 (--threshold is the exposure times 10).
mkdir "$tmp/unit"
sed "s|/usr/bin/recoveryd|$root/usr/bin/recoveryd|g" "$root/usr/lib/systemd/system/recoveryd.service" \
    >"$tmp/unit/recoveryd.service"
grep -q '^Type=notify$' "$tmp/unit/recoveryd.service" || fail "the unit is not Type=notify"
if ! systemd-analyze verify --man=no "$tmp/unit/recoveryd.service" >"$tmp/verify.log" 2>&1 ||
    [ -s "$tmp/verify.log" ]; then
    cat "$tmp/verify.log" >&2
    fail "systemd-analyze verify"
fi
systemd-analyze security --offline=true --threshold=39 "$tmp/unit/recoveryd.service" \
    >"$tmp/security.log" 2>&1 || { cat "$tmp/security.log" >&2; fail "systemd-analyze security: 4.0 or more"; }
grep 'Overall exposure level' "$tmp/security.log"

# apt resolves its dependencies on this machine (simulated: nothing installed).
if command -v apt-get >/dev/null 2>&1; then
    apt-get install -s -q "$deb" >"$tmp/apt.log" 2>&1 ||
        { cat "$tmp/apt.log" >&2; fail "apt-get install -s $deb"; }
fi
echo "ok: $(basename "$deb"): $depends"
