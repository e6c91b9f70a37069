// The app identity's roles at one managed management group. Which roles, and the condition, are decided in rbac.bicep.
targetScope = 'managementGroup'

param principalId string
@description('Role definition ids assigned without a condition.')
param roleIds array
param rbacAdministratorRoleId string
@description('ABAC condition (version 2.0) limiting what the RBAC Administrator assignment may assign or delete.')
param rbacAdministratorCondition string

resource unconditioned 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in roleIds: {
  name: guid(managementGroup().id, principalId, roleId)
  properties: {
    roleDefinitionId: tenantResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource rbacAdministrator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(managementGroup().id, principalId, rbacAdministratorRoleId)
  properties: {
    roleDefinitionId: tenantResourceId('Microsoft.Authorization/roleDefinitions', rbacAdministratorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Identity Mover: copy role assignments to moved identities (service principals only, no privileged roles)'
    condition: rbacAdministratorCondition
    conditionVersion: '2.0'
  }
}
