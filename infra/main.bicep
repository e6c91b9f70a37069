// Identity Mover on Azure: what `azd up` provisions (subscription scope, like the azd Functions quickstarts).
//
//   resource group
//   ├── user-assigned identity        the app's only credential (storage, App Insights, Event Grid, ARM, Graph)
//   ├── storage account               host storage + move state (tables) + work queue; identity-based only
//   ├── Log Analytics + App Insights  local auth disabled; telemetry sent with the identity
//   ├── Flex Consumption plan + Function App (Python 3.11)
//   ├── Event Grid topic (outgoing)   IdentityMover.Move.* CloudEvents, published with the identity
//   └── Event Grid topic (incoming)   IdentityMover.RegionDecommissioning -> function `region_decommissioning`
//
// Every role assignment is decided in app/rbac.bicep.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used to derive a unique, deterministic suffix for every resource name.')
param environmentName string

@minLength(1)
@description('Region for all resources. Must offer the Flex Consumption plan.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Comma-separated subscription ids whose identities the app may move (it gets its roles there). Empty and no management group: the subscription you deploy into.')
param managedSubscriptionIds string = ''

@description('Management group id whose subscriptions the app may move identities in (roles assigned at the management group). Empty: none.')
param managedManagementGroupId string = ''

@description('IDMOVE_ALLOWED_SUBSCRIPTIONS: comma-separated allow-list a move may touch. Empty: the managed subscriptions (no extra restriction when only a management group is given).')
param allowedSubscriptionIds string = ''

@description('Create the Event Grid subscription that delivers IdentityMover.RegionDecommissioning to the function. Needs the code deployed first: the postdeploy hook turns it on and provisions again.')
param decommissionSubscriptionEnabled bool = false

@description('Microsoft Graph base URL including the version. Empty: derived from the cloud you deploy to.')
param graphEndpoint string = ''

param resourceGroupName string = ''
param functionAppName string = ''
param identityName string = ''
param storageAccountName string = ''
param logAnalyticsName string = ''
param applicationInsightsName string = ''
param eventsTopicName string = ''
param decommissionTopicName string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var appName = !empty(functionAppName) ? functionAppName : 'func-idmove-${resourceToken}'
var deploymentContainerName = 'app-package-${take(appName, 32)}-${take(toLower(uniqueString(appName, resourceToken)), 7)}'

// The subscriptions the app gets its roles in (and the default allow-list).
var managedSubscriptions = !empty(managedSubscriptionIds) ? split(replace(managedSubscriptionIds, ' ', ''), ',') : (empty(managedManagementGroupId) ? [subscription().subscriptionId] : [])
var allowedSubscriptions = !empty(allowedSubscriptionIds) ? replace(allowedSubscriptionIds, ' ', '') : join(managedSubscriptions, ',')

// ARM: environment().resourceManager ends with '/'; the contract's form has none.
var armEndpointRaw = environment().resourceManager
var armEndpoint = endsWith(armEndpointRaw, '/') ? substring(armEndpointRaw, 0, length(armEndpointRaw) - 1) : armEndpointRaw
// Microsoft Graph: environment().graph is the retired Azure AD Graph (graph.windows.net), so it cannot be used.
// Map the cloud name to its Microsoft Graph endpoint instead (overridable with graphEndpoint).
var microsoftGraphByCloud = {
  AzureCloud: 'https://graph.microsoft.com'
  AzureUSGovernment: 'https://graph.microsoft.us'
  AzureChinaCloud: 'https://microsoftgraph.chinacloudapi.cn'
}
var graphBase = contains(microsoftGraphByCloud, environment().name) ? microsoftGraphByCloud[environment().name] : 'https://graph.microsoft.com'
var graphEndpointSetting = !empty(graphEndpoint) ? graphEndpoint : '${graphBase}/v1.0'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: !empty(identityName) ? identityName : 'id-idmove-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: !empty(storageAccountName) ? storageAccountName : 'stidmove${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: !empty(logAnalyticsName) ? logAnalyticsName : 'log-idmove-${resourceToken}'
    applicationInsightsName: !empty(applicationInsightsName) ? applicationInsightsName : 'appi-idmove-${resourceToken}'
    location: location
    tags: tags
  }
}

module eventGrid 'app/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    eventsTopicName: !empty(eventsTopicName) ? eventsTopicName : 'evgt-idmove-events-${resourceToken}'
    decommissionTopicName: !empty(decommissionTopicName) ? decommissionTopicName : 'evgt-idmove-decommission-${resourceToken}'
    location: location
    tags: tags
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: appName
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    armEndpoint: armEndpoint
    graphEndpoint: graphEndpointSetting
    eventGridEndpoint: eventGrid.outputs.eventsTopicEndpoint
    allowedSubscriptions: allowedSubscriptions
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    eventsTopicName: eventGrid.outputs.eventsTopicName
    managedSubscriptionIds: managedSubscriptions
    managedManagementGroupId: managedManagementGroupId
  }
}

// Created only once the code is deployed (Event Grid checks that the destination function exists):
// the postdeploy hook in azure.yaml sets IDMOVE_DECOMMISSION_SUBSCRIPTION=true and provisions again.
// A parameter (rather than `az eventgrid event-subscription create` in the hook) keeps every resource in
// Bicep, where checkov and the tests see it, and `azd down` removes it with the rest.
module decommissionSubscription 'app/event-subscription.bicep' = if (decommissionSubscriptionEnabled) {
  name: 'decommission-subscription'
  scope: rg
  params: {
    topicName: eventGrid.outputs.decommissionTopicName
    functionAppName: api.outputs.name
    functionName: 'region_decommissioning'
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = api.outputs.uri
output IDMOVE_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output IDMOVE_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output IDMOVE_EVENTGRID_ENDPOINT string = eventGrid.outputs.eventsTopicEndpoint
output IDMOVE_DECOMMISSION_TOPIC_ID string = eventGrid.outputs.decommissionTopicId
output IDMOVE_DECOMMISSION_TOPIC_ENDPOINT string = eventGrid.outputs.decommissionTopicEndpoint
