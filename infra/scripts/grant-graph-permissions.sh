#!/bin/sh
# Grant Identity Mover's identity the Microsoft Graph application permissions it needs (app role assignments
# on the Microsoft Graph service principal). Bicep cannot do this. Run it as a Privileged Role Administrator
# or Global Administrator, signed in with `az login`:
#
#   infra/scripts/grant-graph-permissions.sh <principal id of the app identity>
#   (azd: infra/scripts/grant-graph-permissions.sh "$(azd env get-value IDMOVE_IDENTITY_PRINCIPAL_ID)")
#
# The permissions, least privilege for what a move does in Entra ID (the one list: shared/permissions.py,
# `idmove permissions`; tests/test_infra_permissions.py keeps this line equal to its GRAPH_GRANTED):
#   GroupMember.ReadWrite.All       add the new identity to the source identity's groups and remove the old one.
#                                   Narrower than Group.ReadWrite.All: it cannot create, delete or rename groups.
#   Application.ReadWrite.All       Microsoft Graph requires it, next to GroupMember.ReadWrite.All, to add a
#                                   SERVICE PRINCIPAL to a group (add members: "servicePrincipal:
#                                   GroupMember.ReadWrite.All and Application.ReadWrite.All"); the only other way
#                                   is Directory.ReadWrite.All. It also covers reading service principals
#                                   (memberOf, app role assignments), so Application.Read.All is not granted.
#                                   It is powerful: it can add credentials to any application. Skip it (edit
#                                   `permissions` below, grant Application.Read.All instead) if no identity you
#                                   move is in a group: the plan then blocks only moves that have memberships.
#   AppRoleAssignment.ReadWrite.All read the source identity's app role assignments and grant the same app
#                                   roles to the new identity (POST /servicePrincipals/{id}/appRoleAssignments),
#                                   remove them from the old one at cleanup. This is a powerful permission (it can
#                                   grant any app role, including Graph's); it is the only one Graph offers for
#                                   this, so keep the identity's other access tight and review its use.
# Running it again is harmless: permissions already granted are skipped.
set -eu

principal_id="${1:?usage: $0 <principal id of the Identity Mover identity>}"
permissions="GroupMember.ReadWrite.All Application.ReadWrite.All AppRoleAssignment.ReadWrite.All"
graph_app_id="00000003-0000-0000-c000-000000000000" # Microsoft Graph's appId, the same in every tenant

# Microsoft Graph of the cloud az is signed in to (graph.microsoft.com, graph.microsoft.us, ...).
graph="$(az cloud show --query endpoints.microsoftGraphResourceId -o tsv)"
graph="${graph%/}/v1.0"

graph_sp_id="$(az ad sp show --id "$graph_app_id" --query id -o tsv)"
for permission in $permissions; do
  app_role_id="$(az ad sp show --id "$graph_app_id" \
    --query "appRoles[?value=='$permission' && contains(allowedMemberTypes, 'Application')].id | [0]" -o tsv)"
  if [ -z "$app_role_id" ]; then
    echo "Microsoft Graph has no application permission named $permission" >&2
    exit 1
  fi
  existing="$(az rest --method get \
    --url "$graph/servicePrincipals/$principal_id/appRoleAssignments" \
    --query "value[?appRoleId=='$app_role_id' && resourceId=='$graph_sp_id'].id | [0]" -o tsv)"
  if [ -n "$existing" ]; then
    echo "already granted: $permission"
    continue
  fi
  az rest --method post \
    --url "$graph/servicePrincipals/$graph_sp_id/appRoleAssignedTo" \
    --headers "Content-Type=application/json" \
    --body "{\"principalId\": \"$principal_id\", \"resourceId\": \"$graph_sp_id\", \"appRoleId\": \"$app_role_id\"}" \
    --output none
  echo "granted: $permission"
done
