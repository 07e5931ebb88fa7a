export { PolicyEngine, pathEntity, compileDocument, messages, validateStatements, type PolicyDoc, type Principal, type Decision, type Statement } from './engine.js';
export { PolicyStore, normalisePolicyName } from './store.js';
export { API_SCHEMA, ACTION_TYPE, CONNECT, HTTP_HEADERS_TYPE, NAMESPACE_TYPE, SERVICE_TYPE } from './schema.js';
export { ROOT_POLICY, DEFAULT_POLICY, WORKLOAD_POLICY } from './builtin.js';
export { policyRoutes } from './routes.js';
export { runPolicyCases, parsePolicyCases, type PolicyCase, type PolicyCaseResult } from './test-cases.js';
