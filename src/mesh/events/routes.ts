import { PermissionDeniedError } from '../../core/errors.js';
import type { Route } from '../../core/request.js';
import type { SecurityEvent, SecurityEvents } from '../../detect/index.js';
import { MAX_BATCH_BYTES, MAX_BATCH_EVENTS, parseEventBatch, type WireEvent } from './validate.js';

// mesh/events: where proxies report every refused handshake, denied connection and cut connection, in batches.
// Authorized like any path (the built-in `workload` policy lets an SVID-authenticated proxy write here). The
// subject of each recorded event is the reporting proxy's SPIFFE ID, taken from the authenticated caller: a body
// cannot speak for another proxy.

const PREFIX = 'mesh_';

/** The security event a proxy's report becomes. `reporter` is the authenticated caller's SPIFFE ID. */
export function securityEventOf(e: WireEvent, reporter: string, clientIp: string): SecurityEvent {
  const details: Record<string, string> = { reason: e.reason, direction: e.direction, peer: e.peer };
  if (e.spiffe_id !== undefined) details.peer_spiffe_id = e.spiffe_id;
  return {
    type: PREFIX + e.type, outcome: 'failure', subject: reporter, client_ip: clientIp, details,
    ...(e.detail !== undefined ? { reason: e.detail } : {}),
  };
}

export function eventRoutes(events: SecurityEvents): Route[] {
  return [
    {
      pattern: 'events',
      summary: `Records a batch of proxy security events (refused, denied, closed; at most ${MAX_BATCH_EVENTS} and ${MAX_BATCH_BYTES / 1024} KiB per request), all or none.`,
      fields: {
        events: { type: 'any', description: 'the events: {type, reason, direction, peer, spiffe_id?, detail?}', required: true },
      },
      auditPlain: ['accepted'],
      operations: {
        update: async (ctx) => {
          const reporter = ctx.caller?.entityId ?? '';
          // Root and operator tokens have no SPIFFE ID: only a workload can say what its proxy saw.
          if (!reporter.startsWith('spiffe://')) throw new PermissionDeniedError('permission denied: only a workload (authenticated by its SPIFFE ID) may report mesh events');
          const batch = parseEventBatch(ctx.fields.events);
          await events.recordMany(batch.map((e) => securityEventOf(e, reporter, ctx.req.client.address)));
          return { data: { accepted: batch.length } };
        },
      },
    },
  ];
}
