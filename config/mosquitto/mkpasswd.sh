#!/bin/sh
# Create or update the mosquitto password file.
#   mkpasswd.sh PASSWDFILE user[:password] ...
# A user given without ":password" is prompted for (mosquitto_passwd asks twice).
# Accounts the ACL knows: viewer, operator, admin, edge (add more by copying ACL blocks).
set -eu
file=${1:?usage: mkpasswd.sh PASSWDFILE user[:password] ...}
shift
[ "$#" -gt 0 ] || { echo "give at least one user" >&2; exit 64; }
umask 077
for spec in "$@"; do
  user=${spec%%:*}
  create=""
  [ -s "$file" ] || create="-c"
  if [ "$user" = "$spec" ]; then
    mosquitto_passwd $create "$file" "$user"
  else
    mosquitto_passwd $create -b "$file" "$user" "${spec#*:}"
  fi
done
echo "$file: $(wc -l < "$file") account(s)"
