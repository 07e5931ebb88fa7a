// The sidecar proxy's TLS core (issue 6): mTLS inbound listener and outbound connector. No control-plane wiring yet.
export { PeerVerifier, type PeerVerdict, type PeerVerifierOptions, type RefusedPeer, type VerifiedPeer } from './peer-verifier.js';
export { InboundListener, type Authorize, type InboundOptions, type InboundStats } from './inbound.js';
export { OutboundConnector, type OutboundOptions, type OutboundStats } from './outbound.js';
export { parseHostPort, type EndpointAddress, type EventReason, type ProxyCredentials, type ProxyEvent, type ProxyEventSink, type RefusalReason } from './types.js';
