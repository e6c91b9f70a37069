// Event Grid custom topics. Both accept only Entra ID publishers (disableLocalAuth): no access keys exist.
//  - events: where the app publishes IdentityMover.Move.* as CloudEvents 1.0 (EventGrid Data Sender, rbac.bicep).
//  - decommission: where operators or automation publish IdentityMover.RegionDecommissioning; an event
//    subscription (event-subscription.bicep) delivers it to the function `region_decommissioning`.
param eventsTopicName string
param decommissionTopicName string
param location string = resourceGroup().location
param tags object = {}

resource eventsTopic 'Microsoft.EventGrid/topics@2022-06-15' = {
  //checkov:skip=CKV_AZURE_191: a topic identity is only used to deliver to identity-protected destinations; none is configured, so it would be an unused principal
  //checkov:skip=CKV_AZURE_193: consumers subscribe from anywhere and there is no VNet in this template; publishing needs an Entra token with EventGrid Data Sender (local auth disabled)
  name: eventsTopicName
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource decommissionTopic 'Microsoft.EventGrid/topics@2022-06-15' = {
  //checkov:skip=CKV_AZURE_191: delivery to the Azure Function destination uses Event Grid's own trust, not a topic identity; an identity would be an unused principal
  //checkov:skip=CKV_AZURE_193: operators publish from their own machines; publishing needs an Entra token with EventGrid Data Sender (local auth disabled)
  name: decommissionTopicName
  location: location
  tags: tags
  properties: {
    // The Python v2 Event Grid trigger binds func.EventGridEvent: the Event Grid schema end to end.
    inputSchema: 'EventGridSchema'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

output eventsTopicName string = eventsTopic.name
output eventsTopicEndpoint string = eventsTopic.properties.endpoint
output decommissionTopicName string = decommissionTopic.name
output decommissionTopicId string = decommissionTopic.id
output decommissionTopicEndpoint string = decommissionTopic.properties.endpoint
