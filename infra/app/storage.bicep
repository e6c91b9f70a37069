// Storage for the Functions host (blobs), the move state (tables) and the work queue.
// Reached only with Entra ID (the app identity): shared keys are off, so no connection string exists.
param name string
param location string = resourceGroup().location
param tags object = {}
param deploymentContainerName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // Flex Consumption without VNet integration reaches its storage over the public endpoint, so the
  // firewall cannot default to Deny; access is still Entra-only (no shared key, no anonymous blobs).
  //checkov:skip=CKV_AZURE_35: no VNet in this template; the Flex Consumption host reaches storage publicly, Entra ID auth only (allowSharedKeyAccess false)
  //checkov:skip=CKV_AZURE_206: zone-redundant (ZRS: three synchronous copies across zones); geo-replication is not offered in every region this app may run in, and the moves it records are control-plane work that can be retried
  //checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35: public endpoint needed without VNet integration; no key or anonymous access is possible
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_ZRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    dnsEndpointType: 'Standard'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: { enabled: true }
        file: { enabled: true }
        queue: { enabled: true, keyType: 'Account' }
        table: { enabled: true, keyType: 'Account' }
      }
    }
  }
}

resource blobServices 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

// Flex Consumption deploys the app package into this container.
resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobServices
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
