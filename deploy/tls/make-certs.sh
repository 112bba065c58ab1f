#!/bin/sh
# A private CA and one certificate per Swarm service, with openssl, laid out like cert-manager's
# Secrets (tls.crt, tls.key, ca.crt), for clusters without cert-manager and for local TLS:
#
#   deploy/tls/make-certs.sh OUT_DIR [NAME...]      (default: orchestrator collator assessor refiner gateway)
#   EXTRA_SAN='DNS:localhost,IP:127.0.0.1' deploy/tls/make-certs.sh .swarm/tls orchestrator   # swarm up, port-forward
#
# Each certificate carries its NAME and the cluster names of its Service (NAME.swarm.svc...), plus
# EXTRA_SAN if set, and both usages: a service serves with it and presents it to the mTLS peers it
# calls. The CA is made once in OUT_DIR (ca.key: keep it off the cluster) and reused on later runs.
# Then, per service: kubectl -n swarm create secret generic swarm-tls-NAME --from-file=OUT_DIR/NAME/
set -eu

if [ $# -lt 1 ]; then
  echo "usage: $0 OUT_DIR [NAME...]" >&2
  exit 2
fi
out=$1
shift
[ $# -gt 0 ] || set -- orchestrator collator assessor refiner gateway
umask 077
mkdir -p "$out"

if [ ! -f "$out/ca.key" ]; then
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -days 3650 \
    -subj "/CN=swarm internal CA" -keyout "$out/ca.key" -out "$out/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
fi

for name in "$@"; do
  case $name in
    *[!a-z0-9-]* | "" | -*) echo "$0: $name is not a service name (lowercase letters, digits, -)" >&2; exit 2 ;;
  esac
  dir="$out/$name"
  mkdir -p "$dir"
  san="DNS:$name,DNS:$name.swarm,DNS:$name.swarm.svc,DNS:$name.swarm.svc.cluster.local${EXTRA_SAN:+,$EXTRA_SAN}"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$san" >"$dir/ext.cnf"
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "/CN=$name" \
    -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null
  openssl x509 -req -sha256 -days 90 -in "$dir/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$dir/ext.cnf" -out "$dir/tls.crt" 2>/dev/null
  cp "$out/ca.crt" "$dir/ca.crt"
  rm -f "$dir/tls.csr" "$dir/ext.cnf"
  echo "$dir: tls.crt tls.key ca.crt ($san)"
done
