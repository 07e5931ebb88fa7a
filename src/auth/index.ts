export { TokenStore, toCaller, type TokenEntry, type CreateTokenInput } from './token/store.js';
export { authResult, createTokenBackend, type TokenBackendConfig } from './token/routes.js';
