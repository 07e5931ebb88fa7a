// Proxy security events: the server's mesh/events route and the wire form proxies send.
export { eventRoutes, securityEventOf } from './routes.js';
export {
  EVENT_REASONS, EVENT_TYPES, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_DETAIL_CHARS, isPeerAddress, parseEventBatch, toWireEvent, wireEventBytes,
  type WireEvent,
} from './validate.js';
