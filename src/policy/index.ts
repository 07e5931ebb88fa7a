export { PolicyEngine, pathEntity, type PolicyDoc, type Principal, type Decision } from './engine.js';
export { PolicyStore, normalisePolicyName } from './store.js';
export { API_SCHEMA } from './schema.js';
export { ROOT_POLICY, DEFAULT_POLICY, WORKLOAD_POLICY } from './builtin.js';
export { policyRoutes } from './routes.js';
export { runPolicyCases, parsePolicyCases, type PolicyCase, type PolicyCaseResult } from './test-cases.js';
