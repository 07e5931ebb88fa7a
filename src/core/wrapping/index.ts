export { ResponseWrapper, WRAPPING_POLICY, MAX_WRAP_TTL } from './response-wrapper.js';
