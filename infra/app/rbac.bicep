// Every role the app identity holds, decided here (the azd quickstart's single rbac.bicep).
// Assignment names are guid(scope, principal, role), so provisioning again converges instead of duplicating.
//
//  where                      role                                   why
//  own storage account        Storage Blob Data Owner                Functions host blobs (leases, keys) + Flex deployment container
//  own storage account        Storage Queue Data Contributor         queue trigger (read/process/delete), enqueue work, create the poison queue
//  own storage account        Storage Table Data Contributor         move state and outbox tables
//  own App Insights           Monitoring Metrics Publisher           telemetry with Entra auth (local auth disabled)
//  own outgoing topic         EventGrid Data Sender                  publish IdentityMover.Move.* events (local auth disabled)
//  managed scopes             Managed Identity Contributor           create / update / delete user-assigned identities (+ federated credentials)
//  managed scopes             Managed Identity Operator              assign the new identity to resources (…/assign/action, rebind)
//  managed scopes             Role Based Access Control Administrator   grant + cleanup, CONDITIONED: service principals only, never
//                                                                    Owner / User Access Administrator / RBAC Administrator;
//                                                                    its */read is what snapshot and verify read with
//  managed scopes             Identity Mover rebinder (custom)       rebind: write the resource types the mover supports, their
//                                                                    settings, Key Vault access policies, Cosmos DB data-plane role
//                                                                    assignments, PostgreSQL flexible-server administrators
//
// What the app needs, scope by scope and why, is ONE list: shared/permissions.py (`idmove permissions`); the
// custom role's actions below are exactly its custom_role_actions(), and tests/test_infra_permissions.py runs a
// full move in the emulator with exactly these roles and proves that removing any one of them blocks the plan.
// Not granted here: Reader (the RBAC Administrator role already holds */read; nothing is lost without it), and
// Storage Queue Data Message Processor / Sender (their data actions are a subset of Queue Data Contributor, which
// the host needs anyway to create the poison queue).
// Microsoft Graph application permissions cannot be granted by Bicep: infra/scripts/grant-graph-permissions.sh.
param principalId string
param storageAccountName string
param applicationInsightsName string
param eventsTopicName string
@description('Subscriptions where the app manages identities (roles assigned at subscription scope).')
param managedSubscriptionIds array = []
@description('Management group where the app manages identities (roles assigned at management-group scope). Empty: none.')
param managedManagementGroupId string = ''

// Built-in role definition ids (the same in every Azure cloud).
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
var eventGridDataSenderRoleId = 'd5a91429-5739-47e2-a06b-3470a27159e7' // EventGrid Data Sender
var managedIdentityContributorRoleId = 'e40ec5ca-96e0-45a2-b4ff-59039f2c2b59' // Managed Identity Contributor
var managedIdentityOperatorRoleId = 'f1a07417-d97a-45cb-824c-7a7467783830' // Managed Identity Operator
var rbacAdministratorRoleId = 'f58310d9-a9f6-439a-9e8d-f62e7b41a168' // Role Based Access Control Administrator
// Privileged roles the app may never assign or remove (only referenced by the condition below).
var ownerRoleId = '8e3af657-a8ff-443c-a75c-2fe8c4bcb635' // Owner
var userAccessAdministratorRoleId = '18d7d88d-d35e-4fb5-a5c3-7773c20a72d9' // User Access Administrator

// ABAC condition on the RBAC Administrator assignment (Microsoft's "Delegate Azure role assignment management
// using conditions": constrain roles + constrain principal types). Writes are checked on the request, deletes on
// the existing assignment; both must name a service principal and none of the three privileged roles.
// A custom role that can write role assignments cannot be excluded by id here: keep such roles out of reach
// by not creating them in managed scopes, or move them with a human (the plan lists them as blocking).
var privilegedRoleIds = '${ownerRoleId}, ${userAccessAdministratorRoleId}, ${rbacAdministratorRoleId}'
var rbacAdministratorCondition = '((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/write\'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAllValues:GuidNotEquals {${privilegedRoleIds}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'ServicePrincipal\'})) AND ((!(ActionMatches{\'Microsoft.Authorization/roleAssignments/delete\'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAllValues:GuidNotEquals {${privilegedRoleIds}} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {\'ServicePrincipal\'}))'

// Roles at each managed scope that need no condition.
var managedScopeRoleIds = [
  managedIdentityContributorRoleId
  managedIdentityOperatorRoleId
]

// The custom role for rebinding, defined at each managed scope (its name carries the scope: role names are
// unique per tenant). Only write actions of the types the mover rewrites and of the grants it copies; nothing
// broad. Equal to shared/permissions.py custom_role_actions() (tests/test_infra_permissions.py).
var rebindRoleName = 'Identity Mover rebinder'
var rebindRoleActions = [
  'Microsoft.App/containerApps/write'
  'Microsoft.Compute/virtualMachines/write'
  'Microsoft.Compute/virtualMachineScaleSets/write'
  'Microsoft.ContainerInstance/containerGroups/write'
  'Microsoft.ContainerService/managedClusters/write'
  'Microsoft.DBforMySQL/flexibleServers/write'
  'Microsoft.DBforPostgreSQL/flexibleServers/administrators/delete'
  'Microsoft.DBforPostgreSQL/flexibleServers/administrators/write'
  'Microsoft.DBforPostgreSQL/flexibleServers/write'
  'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/delete'
  'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/write'
  'Microsoft.DocumentDB/databaseAccounts/write'
  'Microsoft.KeyVault/vaults/accessPolicies/write'
  'Microsoft.Sql/servers/write'
  'Microsoft.Storage/storageAccounts/write'
  'Microsoft.Web/sites/config/list/action'
  'Microsoft.Web/sites/config/write'
  'Microsoft.Web/sites/slots/config/list/action'
  'Microsoft.Web/sites/slots/config/write'
  'Microsoft.Web/sites/slots/write'
  'Microsoft.Web/sites/write'
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource eventsTopic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: eventsTopicName
}

resource storageBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource storageQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageQueueDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource storageTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageTableDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource monitoringMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, monitoringMetricsPublisherRoleId)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource eventGridDataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventsTopic.id, principalId, eventGridDataSenderRoleId)
  scope: eventsTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSenderRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Subscription- and management-group-scoped assignments need deployments at those scopes: the same role
// decisions go to one small module per scope kind.
module managedSubscriptionRoles 'rbac-subscription.bicep' = [for subscriptionId in managedSubscriptionIds: {
  name: 'idmove-rbac-${uniqueString(subscriptionId, principalId)}'
  scope: subscription(subscriptionId)
  params: {
    principalId: principalId
    roleIds: managedScopeRoleIds
    rbacAdministratorRoleId: rbacAdministratorRoleId
    rbacAdministratorCondition: rbacAdministratorCondition
    rebindRoleName: rebindRoleName
    rebindRoleActions: rebindRoleActions
  }
}]

module managedManagementGroupRoles 'rbac-managementgroup.bicep' = if (!empty(managedManagementGroupId)) {
  name: 'idmove-rbac-mg-${uniqueString(managedManagementGroupId, principalId)}'
  scope: managementGroup(managedManagementGroupId)
  params: {
    principalId: principalId
    roleIds: managedScopeRoleIds
    rbacAdministratorRoleId: rbacAdministratorRoleId
    rbacAdministratorCondition: rbacAdministratorCondition
    rebindRoleName: rebindRoleName
    rebindRoleActions: rebindRoleActions
  }
}
