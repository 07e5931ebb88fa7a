export { createKvBackend } from './kv/index.js';
