import { Packet, type Resource } from 'dns2';

// Queries in, replies out. Queries are read here, strictly and in one linear pass; dns2 encodes the records of
// replies, one record at a time. dns2's own Packet.parse is not fit for untrusted input: it loops over every count
// in the header and swallows each record it fails to read (a 12-byte header claiming 65,535 records costs half a
// second of CPU, and a question it could not read simply vanishes), its bit-by-bit reader is quadratic (2 ms for a
// crafted 1 KiB query), and it reads an unknown EDNS option's length as bits, not bytes, losing every record after
// an OPT that carries a cookie. Its Packet#toBuffer re-materialises the whole message after each record
// (50 records ≈ 20 ms) and compresses SRV targets, which RFC 2782 forbids; so replies are assembled here.

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5, BADVERS: 16 } as const;
export const TYPE = { A: 1, SOA: 6, AAAA: 28, SRV: 33, OPT: 41, ANY: 255 } as const;
export const CLASS = { IN: 1, ANY: 255 } as const;

const HEADER = 12;
/** A real query is a header, one name (≤ 255 octets) and an OPT record; anything much larger is refused unread. */
export const MAX_QUERY_BYTES = 1024;
/** OPT plus one more (a TSIG or SIG(0), which this server ignores). */
const MAX_ADDITIONALS = 2;
/** RFC 1035 §4.2.1: UDP replies to a client without EDNS. */
export const CLASSIC_UDP = 512;
/** What this server offers over UDP with EDNS: the DNS Flag Day 2020 size, which avoids IP fragmentation. */
export const EDNS_UDP = 1232;
/** RFC 1035 §4.2.2: a TCP message carries a 16-bit length. */
export const TCP_LIMIT = 65535;

export interface Query {
  id: number;
  rd: number;
  /** The question exactly as received, echoed verbatim so clients that randomise case (0x20) match the reply. */
  question: Buffer;
  /** The question name's labels, left to right, ASCII-lowercased (RFC 4343). */
  labels: string[];
  qtype: number;
  qclass: number;
  edns: { payload: number; version: number } | null;
}

export type Decoded =
  | { kind: 'query'; query: Query }
  /** Answerable only with a header: the question could not be trusted. */
  | { kind: 'reject'; id: number; opcode: number; rd: number; rcode: number }
  | { kind: 'drop' };

export interface Reply {
  rcode: number;
  /** Records whose `name` is '' are owned by the question's name. Read lazily, and only while the reply has room. */
  answers: Iterable<Resource>;
  authorities: Iterable<Resource>;
  additionals: Iterable<Resource>;
}

const DROP: Decoded = { kind: 'drop' };

export function readQuery(msg: Buffer): Decoded {
  // Shorter than a header: there is not even an id to answer to.
  if (msg.length < HEADER) return DROP;
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  // A response (QR=1): answering it would let two servers bounce packets between them forever.
  if (flags & 0x8000) return DROP;
  const opcode = (flags >> 11) & 0xf;
  const rd = (flags >> 8) & 1;
  const reject = (rcode: number): Decoded => ({ kind: 'reject', id, opcode, rd, rcode });
  if (opcode !== 0) return reject(RCODE.NOTIMP);
  if (msg.length > MAX_QUERY_BYTES) return reject(RCODE.FORMERR);
  const qdcount = msg.readUInt16BE(4);
  const ancount = msg.readUInt16BE(6);
  const nscount = msg.readUInt16BE(8);
  const arcount = msg.readUInt16BE(10);
  // RFC 9619: a QUERY carries exactly one question; answer and authority sections are empty.
  if (qdcount !== 1 || ancount !== 0 || nscount !== 0 || arcount > MAX_ADDITIONALS) return reject(RCODE.FORMERR);
  const name = readQuestionName(msg);
  if (name === null || name.end + 4 > msg.length) return reject(RCODE.FORMERR);
  const question = Buffer.from(msg.subarray(HEADER, name.end + 4));
  const edns = readAdditionals(msg, name.end + 4, arcount);
  if (edns === 'malformed') return reject(RCODE.FORMERR);
  const query: Query = { id, rd, question, labels: name.labels, qtype: msg.readUInt16BE(name.end), qclass: msg.readUInt16BE(name.end + 2), edns };
  return { kind: 'query', query };
}

/** RFC 1035 §4.1.2 / §2.3.4: plain labels of 1–63 octets, 255 octets in all. No pointers: nothing precedes it. */
function readQuestionName(msg: Buffer): { labels: string[]; end: number } | null {
  const labels: string[] = [];
  let at = HEADER;
  for (;;) {
    if (at >= msg.length) return null;
    const len = msg[at] as number;
    if (len === 0) break;
    if (len > 63) return null; // 0xc0 pointer or the reserved 0x40/0x80 forms
    if (at + 1 + len > msg.length || at + 1 + len - HEADER >= 255) return null;
    const label = Buffer.from(msg.subarray(at + 1, at + 1 + len));
    for (let i = 0; i < label.length; i++) {
      const c = label[i] as number;
      if (c >= 0x41 && c <= 0x5a) label[i] = c + 0x20;
    }
    labels.push(label.toString('latin1'));
    at += 1 + len;
  }
  return { labels, end: at + 1 };
}

/**
 * The additional section, which must end the message: each record's owner, fixed fields and RDATA in bounds, and at
 * most one OPT record (RFC 6891 §6.1.1: owned by the root, options that exactly fill its RDATA). Returns the OPT's
 * payload size and version, or null without one.
 */
function readAdditionals(msg: Buffer, start: number, count: number): Query['edns'] | 'malformed' {
  let at = start;
  let edns: Query['edns'] = null;
  for (let n = 0; n < count; n++) {
    const owner = at;
    at = skipName(msg, at);
    if (at < 0 || at + 10 > msg.length) return 'malformed';
    const type = msg.readUInt16BE(at);
    const rdlength = msg.readUInt16BE(at + 8);
    const rdata = at + 10;
    at = rdata + rdlength;
    if (at > msg.length) return 'malformed';
    if (type !== TYPE.OPT) continue;
    if (edns !== null || msg[owner] !== 0) return 'malformed';
    for (let o = rdata; o < at; o += 4 + msg.readUInt16BE(o + 2)) {
      if (o + 4 > at || o + 4 + msg.readUInt16BE(o + 2) > at) return 'malformed';
    }
    edns = { payload: msg.readUInt16BE(owner + 3), version: msg[owner + 6] as number };
  }
  return at === msg.length ? edns : 'malformed';
}

/** Past a name that may end in a compression pointer (RFC 1035 §4.1.4); -1 if it runs out or over 255 octets. */
function skipName(msg: Buffer, start: number): number {
  let at = start;
  while (at < msg.length) {
    const len = msg[at] as number;
    if (len === 0) return at + 1;
    if ((len & 0xc0) === 0xc0) return at + 2 <= msg.length ? at + 2 : -1;
    if (len > 63 || at + 1 + len - start >= 255) return -1;
    at += 1 + len;
  }
  return -1;
}

/** A header-only reply (RFC 1035 §4.1.1): for queries whose question could not be trusted. */
export function encodeRejection(r: { id: number; opcode: number; rd: number; rcode: number }): Buffer {
  return new Packet.Header({ id: r.id, qr: 1, opcode: r.opcode, rd: r.rd ? 1 : 0, rcode: r.rcode & 0xf }).toBuffer();
}

/** The byte budget for a reply: TCP's message limit, or the smaller of the client's and this server's UDP size. */
export function replyLimit(query: Query, transport: 'udp' | 'tcp'): number {
  if (transport === 'tcp') return TCP_LIMIT;
  if (!query.edns) return CLASSIC_UDP;
  return Math.min(Math.max(query.edns.payload, CLASSIC_UDP), EDNS_UDP);
}

/**
 * The reply, filled in section order while it fits in `limit`. If an answer or authority record does not fit the
 * reply stops there with TC set (RFC 2181 §9), so the client retries over TCP; additional records that do not fit
 * are just left out.
 */
export function encodeReply(query: Query, reply: Reply, limit: number): Buffer {
  const opt = query.edns ? encodeOpt(reply.rcode) : null;
  const sections: Buffer[][] = [[], [], []];
  let size = HEADER + query.question.length + (opt?.length ?? 0);
  let truncated = false;
  // Where each SRV target was written, so the additional records about it can point there (§4.1.4).
  const written = new Map<string, number>();
  [reply.answers, reply.authorities, reply.additionals].some((records, i) => {
    for (const rr of records) {
      const bytes = encodeRecord(rr, written);
      if (size + bytes.length > limit) {
        truncated = i < 2;
        return truncated;
      }
      if (rr.type === TYPE.SRV && rr.target) written.set(rr.target.toLowerCase(), size + bytes.length - Packet.Name.encode(rr.target).length);
      sections[i]!.push(bytes);
      size += bytes.length;
    }
    return false;
  });
  const [an, ns, ar] = sections as [Buffer[], Buffer[], Buffer[]];
  if (opt) ar.push(opt);
  const header = new Packet.Header({
    id: query.id,
    qr: 1,
    opcode: 0,
    aa: 1,
    tc: truncated ? 1 : 0,
    rd: query.rd ? 1 : 0,
    // RFC 6891 §6.1.3: only the low four bits live in the header; the rest ride in the OPT record.
    rcode: reply.rcode & 0xf,
    qdcount: 1,
    ancount: an.length,
    nscount: ns.length,
    arcount: ar.length,
  });
  return Buffer.concat([header.toBuffer(), query.question, ...an, ...ns, ...ar]);
}

/**
 * One record, on its own (so dns2 never sees more than one at a time). Its owner is compressed to a pointer when it
 * is the QNAME ('') or a name already written; names inside RDATA are not (RFC 2782 forbids it for SRV targets).
 */
function encodeRecord(rr: Resource, written: ReadonlyMap<string, number>): Buffer {
  const at = rr.name === '' ? HEADER : written.get(rr.name.toLowerCase());
  if (at === undefined || at >= 0x4000) return Packet.Resource.encode(rr);
  // An empty owner encodes as the one root octet; swap it for the pointer.
  const bytes = Packet.Resource.encode(rr.name === '' ? rr : new Packet.Resource({ ...rr, name: '' }));
  return Buffer.concat([Buffer.from([0xc0 | (at >> 8), at & 0xff]), bytes.subarray(1)]);
}

function encodeOpt(rcode: number): Buffer {
  const opt = Packet.Resource.EDNS([]);
  opt.name = '';
  opt.class = EDNS_UDP;
  // RFC 6891 §6.1.3: TTL = extended RCODE (8 bits) | version 0 | DO 0 | Z.
  opt.ttl = ((rcode >> 4) & 0xff) << 24;
  return Packet.Resource.encode(opt);
}
