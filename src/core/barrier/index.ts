export { Barrier, SEAL_PREFIX, type SecureStore, type SecureTxnOp } from './barrier.js';
export { DecryptError, sealValue, openValue } from './aead.js';
