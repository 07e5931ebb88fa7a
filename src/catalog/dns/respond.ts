import { answer, type Zone } from './answer.js';
import { encodeRejection, encodeReply, RCODE, readQuery, replyLimit, type Query } from './wire.js';

export interface DnsLogger {
  warn(obj: object, msg: string): void;
}

export type Responder = (msg: Buffer, transport: 'udp' | 'tcp') => Buffer | null;

/**
 * One message in, the reply out, or null when it deserves none. Never throws: malformed input is answered by
 * readQuery's checks (FORMERR, NOTIMP) or dropped; anything else that fails (the catalog, a bug) is logged and
 * answered SERVFAIL, so one bad packet can neither crash the server nor go unnoticed.
 */
export function createResponder(zone: Zone, logger: DnsLogger): Responder {
  return (msg, transport) => {
    let query: Query | null = null;
    try {
      const decoded = readQuery(msg);
      if (decoded.kind === 'drop') return null;
      if (decoded.kind === 'reject') return encodeRejection(decoded);
      query = decoded.query;
      return encodeReply(query, answer(query, zone), replyLimit(query, transport));
    } catch (err) {
      logger.warn({ err, transport, bytes: msg.length }, 'DNS: could not answer a query; replied SERVFAIL');
      try {
        // With the question echoed, resolvers read SERVFAIL as the server's answer rather than a bad packet.
        if (query) return encodeReply(query, { rcode: RCODE.SERVFAIL, answers: [], authorities: [], additionals: [] }, replyLimit(query, transport));
        if (msg.length < 12 || msg[2] & 0x80) return null;
        return encodeRejection({ id: msg.readUInt16BE(0), opcode: (msg[2] >> 3) & 0xf, rd: msg[2] & 1, rcode: RCODE.SERVFAIL });
      } catch {
        return null;
      }
    }
  };
}
