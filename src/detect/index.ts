export { SecurityEvents, type SecurityEvent, type StoredEvent } from './events.js';
