#!/bin/sh
# Make a local CA, a broker certificate and client certificates with openssl.
#   mkcerts.sh OUTDIR [SERVER_NAMES] [CLIENTS]
#   SERVER_NAMES: comma-separated DNS names / IPs for the broker cert (default localhost,127.0.0.1,::1)
#   CLIENTS:      comma-separated client cert names (default edge)
# Writes OUTDIR/ca.crt ca.key server.crt server.key <client>.crt <client>.key. Keep ca.key offline.
set -eu
out=${1:?usage: mkcerts.sh OUTDIR [SERVER_NAMES] [CLIENTS]}
names=${2:-localhost,127.0.0.1,::1}
clients=${3:-edge}
days=${DAYS:-825}
mkdir -p "$out"
cd "$out"
umask 077
san=""
old_ifs=$IFS; IFS=,
for n in $names; do
  case "$n" in
    *[!0-9.:a-fA-F]*) san="${san:+$san,}DNS:$n" ;;
    *) san="${san:+$san,}IP:$n" ;;
  esac
done
IFS=$old_ifs
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" -keyout ca.key -out ca.crt \
  -subj "/CN=edgectl local CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
first=$(echo "$names" | cut -d, -f1)
openssl req -newkey rsa:2048 -nodes -sha256 -keyout server.key -out server.csr -subj "/CN=$first" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -sha256 \
  -extfile server.ext -out server.crt 2>/dev/null
IFS=,
for c in $clients; do
  openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$c.key" -out "$c.csr" -subj "/CN=$c" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' > "$c.ext"
  openssl x509 -req -in "$c.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -sha256 \
    -extfile "$c.ext" -out "$c.crt" 2>/dev/null
  rm -f "$c.csr" "$c.ext"
done
rm -f server.csr server.ext ca.srl
chmod 644 ca.crt server.crt
echo "$out: ca.crt server.crt/key ($san) and client certs: $clients"
