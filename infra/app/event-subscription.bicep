// Delivers IdentityMover.RegionDecommissioning from the decommission topic to the Event Grid trigger.
// Event Grid validates an Azure Function destination when the subscription is created, so this module runs
// only after the code is deployed (main.bicep: decommissionSubscriptionEnabled, set by the postdeploy hook).
param topicName string
param functionAppName string
param functionName string = 'region_decommissioning'

resource topic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: topicName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' existing = {
  name: functionAppName
}

resource regionDecommissioning 'Microsoft.EventGrid/topics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'region-decommissioning'
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/${functionName}'
        maxEventsPerBatch: 1
      }
    }
    filter: {
      includedEventTypes: [
        'IdentityMover.RegionDecommissioning'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}
