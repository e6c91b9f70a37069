// The app identity's roles in one managed subscription. Which roles, and the condition, are decided in rbac.bicep.
targetScope = 'subscription'

param principalId string
@description('Role definition ids assigned without a condition.')
param roleIds array
param rbacAdministratorRoleId string
@description('ABAC condition (version 2.0) limiting what the RBAC Administrator assignment may assign or delete.')
param rbacAdministratorCondition string
@description('Name of the custom role for rebinding (the scope is appended: role names are unique per tenant).')
param rebindRoleName string
@description('Actions of the custom role for rebinding (decided in rbac.bicep).')
param rebindRoleActions array

resource unconditioned 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in roleIds: {
  name: guid(subscription().id, principalId, roleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]

resource rbacAdministrator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, rbacAdministratorRoleId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', rbacAdministratorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Identity Mover: copy role assignments to moved identities (service principals only, no privileged roles)'
    condition: rbacAdministratorCondition
    conditionVersion: '2.0'
  }
}

resource rebindRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, rebindRoleName)
  properties: {
    roleName: '${rebindRoleName} (${subscription().subscriptionId})'
    description: 'Identity Mover: point resources at a moved identity and copy the access services keep themselves'
    type: 'CustomRole'
    permissions: [
      {
        actions: rebindRoleActions
        notActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource rebinder 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, rebindRole.id)
  properties: {
    roleDefinitionId: rebindRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Identity Mover: rebind resources to moved identities'
  }
}
