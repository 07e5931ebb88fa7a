// The sidecar proxy (issue 6): the mTLS core (inbound listener, outbound connector) and the Sidecar that wires it to the control plane.
export { PeerVerifier, type PeerVerdict, type PeerVerifierOptions, type RefusedPeer, type VerifiedPeer } from './peer-verifier.js';
export { InboundListener, type Authorize, type InboundOptions, type InboundStats } from './inbound.js';
export { InboundHttpListener, spiffeIdOfChain, type AuthorizeConnection, type AuthorizeRequest, type HttpRequestInfo, type HttpRequestRecord, type InboundHttpOptions, type InboundHttpStats } from './inbound-http.js';
export { OutboundConnector, type OutboundOptions, type OutboundStats } from './outbound.js';
export { Balancer, type BalancerOptions, type Endpoint, type EndpointRef, type EndpointStatus, type LbPolicy, type OutlierOptions } from './balancer.js';
export { parseHostPort, type EndpointAddress, type EventReason, type ProxyCredentials, type ProxyEvent, type ProxyEventSink, type RefusalReason } from './types.js';
export { Sidecar, type SidecarOptions, type UpstreamSpec } from './sidecar.js';
export { sidecarServiceName, SIDECAR_SUFFIX } from './runtime/registration.js';
