export { SealManager, AEGIS_VERSION, type SealStatus } from './seal-manager.js';
export { KeyFileUnseal } from './key-file.js';
export type { AutoUnseal } from './auto-unseal.js';
