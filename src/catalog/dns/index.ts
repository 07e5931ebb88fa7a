// The catalog's DNS interface: `<service>.service[.<namespace>].<domain>` answers A, AAAA and SRV with the passing
// instances, on UDP and TCP.
export { startDnsServer, type DnsServerOptions, type RunningDns } from './server.js';
export type { DnsLogger } from './respond.js';
