// The Function App on the Flex Consumption plan (FC1), Python 3.11, running as the app's user-assigned identity.
// App settings carry no secret: storage, App Insights, Event Grid, ARM and Graph are all reached with that identity.
param name string
param location string = resourceGroup().location
param tags object = {}
param serviceName string = 'api'
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string
param armEndpoint string
param graphEndpoint string
param eventGridEndpoint string
param allowedSubscriptions string
param instanceMemoryMB int = 2048
param maximumInstanceCount int = 40

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Names follow ../shared/CONTRACT.md "Settings" and the Functions identity-based connection convention.
var appSettings = [
  // Host storage through the identity: no AzureWebJobsStorage connection string.
  { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
  { name: 'AzureWebJobsStorage__clientId', value: identityClientId }
  { name: 'AzureWebJobsStorage__blobServiceUri', value: storage.properties.primaryEndpoints.blob }
  { name: 'AzureWebJobsStorage__queueServiceUri', value: storage.properties.primaryEndpoints.queue }
  { name: 'AzureWebJobsStorage__tableServiceUri', value: storage.properties.primaryEndpoints.table }
  // The connection string only names the ingestion endpoint; local auth is disabled on the component,
  // so telemetry is accepted only with the identity's token (the authentication string).
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: applicationInsights.properties.ConnectionString }
  { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identityClientId};Authorization=AAD' }
  // DefaultAzureCredential picks the user-assigned identity by this client id.
  { name: 'AZURE_CLIENT_ID', value: identityClientId }
  { name: 'IDMOVE_CREDENTIAL', value: 'default' }
  { name: 'IDMOVE_ARM_ENDPOINT', value: armEndpoint }
  { name: 'IDMOVE_GRAPH_ENDPOINT', value: graphEndpoint }
  // The topic has local auth disabled, so IDMOVE_EVENTGRID_KEY is deliberately NOT set: with an endpoint
  // and no key the engine must publish with the credential (an Entra token, EventGrid Data Sender role).
  { name: 'IDMOVE_EVENTGRID_ENDPOINT', value: eventGridEndpoint }
  { name: 'IDMOVE_ALLOWED_SUBSCRIPTIONS', value: allowedSubscriptions }
  // The queue triggers bind to %IDMOVE_QUEUE_NAME% (function_app.py): the host needs the setting to index them.
  { name: 'IDMOVE_QUEUE_NAME', value: 'idmove-work' }
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225: Flex Consumption zone redundancy exists only in some regions and needs always-ready instances (a fixed cost); the mover's state is in zone-redundant storage and work resumes from the queue
  name: 'plan-${name}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

// Reachable from the internet on purpose: the HTTP API and Event Grid delivery call it, and every route needs
// a function key. (pycep-parser, which checkov uses, allows only a few comment lines in a row inside a block.)
resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_222: the HTTP API and Event Grid delivery must reach the app; routes need function keys; no VNet in this template
  //checkov:skip=CKV_AZURE_17: Event Grid's Azure Function delivery and azd cannot present client certificates; function keys authenticate callers
  //checkov:skip=CKV_AZURE_212: Flex Consumption scales to zero by design; queue and Event Grid work wakes it, nothing is lost while idle
  //checkov:skip=CKV_AZURE_213: Flex Consumption has no App Service health check; the Functions host is monitored through Application Insights
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: appSettings
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }

}

output name string = functionApp.name
output id string = functionApp.id
output uri string = 'https://${functionApp.properties.defaultHostName}'
