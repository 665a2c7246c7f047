#!/bin/bash
# Run once by the postgres image on an empty data folder (/docker-entrypoint-initdb.d): one
# database and one login per owner, so no service can read another's tables (database per
# service). Each password comes from the environment: <NAME>_DB_PASSWORD.
# deploy/compose/postgres-init.sh and deploy/k8s/base/postgres-init.sh are one file in two places
# (each tool reads only below its own folder); a test keeps them equal.
set -eo pipefail

for name in blog auth posts images email; do
  variable="${name^^}_DB_PASSWORD"
  password="${!variable:-}"
  if [ -z "$password" ]; then
    echo "postgres-init: $variable is not set" >&2
    exit 1
  fi
  psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    --set name="$name" --set password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
  echo "postgres-init: database $name, owned by $name"
done
