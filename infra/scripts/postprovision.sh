#!/bin/sh
# azd postprovision hook: optionally grant the app identity its Microsoft Graph application permissions.
# Off by default, because it needs a Privileged Role Administrator or Global Administrator.
set -eu
if [ "${IDMOVE_GRANT_GRAPH_PERMISSIONS:-false}" != "true" ]; then
  echo "Microsoft Graph permissions not granted (IDMOVE_GRANT_GRAPH_PERMISSIONS is not true)."
  echo "Moves of identities with group memberships or app role assignments need them: see infra/README.md."
  exit 0
fi
exec "$(dirname "$0")/grant-graph-permissions.sh" "${IDMOVE_IDENTITY_PRINCIPAL_ID:?run azd provision first}"
