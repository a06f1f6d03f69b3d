#!/bin/sh
# Makes a cluster CA and one certificate per replica for mutual TLS between
# recoveryd replicas (cluster.tls; docs/security.md), with the openssl CLI.
#
#   deploy/make-certs.sh DIR ID[=NAME,...] [ID[=NAME,...] ...]
#
# DIR/ca.crt, DIR/ca.key: the cluster CA (made once; an existing one is reused,
#   so running the script again adds replicas to the same cluster).
# DIR/replica-ID.crt, DIR/replica-ID.key: replica ID's certificate and key,
#   subject CN=replica-ID, subjectAltName DNS:replica-ID plus each NAME (an
#   IPv4/IPv6 address becomes an IP entry, anything else a DNS entry), usable
#   as TLS server and client (both ends of a raft connection present one).
#
# Each replica gets ca.crt and its own pair:
#   cluster:
#     replica_id: 2
#     tls: {ca: /etc/recoveryd/tls/ca.crt, cert: /etc/recoveryd/tls/replica-2.crt,
#           key: /etc/recoveryd/tls/replica-2.key}
# Keep ca.key off the replicas. Keys are EC P-256; certificates last
# RD_CERT_DAYS days (default 825).
set -eu

usage() {
    echo "usage: $0 DIR ID[=NAME,...] [ID[=NAME,...] ...]   (e.g. $0 tls 1=10.0.0.1 2 3)" >&2
    exit 2
}

[ $# -ge 2 ] || usage
dir=$1
shift
command -v openssl >/dev/null 2>&1 || {
    echo "make-certs.sh: the openssl command is needed (Debian: apt-get install openssl)" >&2
    exit 1
}
days=${RD_CERT_DAYS:-825}
mkdir -p "$dir"
umask 077

if [ ! -f "$dir/ca.key" ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$days" \
        -subj "/CN=${RD_CA_NAME:-recoveryd cluster CA}" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.crt"
    chmod 644 "$dir/ca.crt"
    echo "made $dir/ca.crt (keep $dir/ca.key private)"
fi

for spec in "$@"; do
    id=${spec%%=*}
    names=
    case $spec in *=*) names=${spec#*=} ;; esac
    case $id in
        '' | *[!0-9]* | 0) echo "make-certs.sh: '$id': a replica id is a number above 0" >&2; exit 2 ;;
    esac
    san="DNS:replica-$id"
    old_ifs=$IFS
    IFS=,
    for n in $names; do
        [ -n "$n" ] || continue
        case $n in
            *:* | *[0-9].*[0-9].*[0-9].*[0-9]) san="$san,IP:$n" ;;
            *) san="$san,DNS:$n" ;;
        esac
    done
    IFS=$old_ifs
    key="$dir/replica-$id.key"
    crt="$dir/replica-$id.crt"
    ext="$dir/.replica-$id.ext"
    csr="$dir/.replica-$id.csr"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null
    openssl req -new -key "$key" -subj "/CN=replica-$id" -out "$csr"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyAgreement" \
        "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectAltName=$san" >"$ext"
    openssl x509 -req -in "$csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
        -extfile "$ext" -out "$crt" 2>/dev/null
    rm -f "$csr" "$ext"
    chmod 644 "$crt"
    echo "made $crt ($san)"
done
