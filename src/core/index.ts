export { Core, type CoreConfig, type InitResult } from './core.js';
export * from './errors.js';
export type { Request, Response, Operation, Action, Route, Backend, Caller, HandlerContext } from './request.js';
export { SqliteStorage, type Storage } from './storage/index.js';
export { KeyFileUnseal, AEGIS_VERSION, type SealStatus } from './seal/index.js';
export { parseDuration, formatDuration } from './duration.js';
