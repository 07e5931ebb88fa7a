export { MeshPolicies, type IntentionView, type MeshPolicyView, type MeshStatement, type IntentionInput } from './store.js';
export { MeshAuthorizer, compileMeshPolicy, type MeshRequest } from './authorizer.js';
export { intentionStatement, intentionRuleId, parseRef, refString, type Intention, type IntentionAction, type ServiceRef } from './model.js';
export { intentionRoutes } from './routes.js';
