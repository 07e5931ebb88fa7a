export { AuditBroker, type AuditDeviceConfig } from './broker.js';
export { verifyAuditLog, type VerifyResult } from './verify.js';
export { auditRoutes } from './routes.js';
export type { AuditRecord } from './entry.js';
