export { createKvBackend } from './kv/index.js';
export { createTransitBackend } from './transit/index.js';
export { createDatabaseBackend } from './database/index.js';
