#!/bin/sh
# azd postdeploy hook: create the Event Grid subscription that delivers IdentityMover.RegionDecommissioning
# to the function `region_decommissioning`.
#
# Why here: Event Grid validates an Azure Function destination when the subscription is created, so the
# function must already be deployed; `azd up` provisions before it deploys. The subscription stays in Bicep
# (main.bicep, parameter decommissionSubscriptionEnabled) so checkov and the tests see it and `azd down`
# removes it; this hook turns the parameter on once and provisions again (an incremental, quick deployment).
# Later `azd up` runs find it on and do nothing here.
set -eu
if [ "${IDMOVE_DECOMMISSION_SUBSCRIPTION:-false}" = "true" ]; then
  exit 0
fi
echo "Creating the Event Grid subscription for IdentityMover.RegionDecommissioning (provisioning again)..."
azd env set IDMOVE_DECOMMISSION_SUBSCRIPTION true
azd provision --no-prompt
