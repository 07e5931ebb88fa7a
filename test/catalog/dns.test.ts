import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { connect } from 'node:net';
import { before, describe, it } from 'node:test';
import { startDnsServer, type RunningDns } from '../../src/catalog/dns/index.js';
import type { DnsCatalog } from '../../src/catalog/model.js';
import { onCleanup } from '../helpers/cleanup.js';

// The catalog's DNS interface against real clients: node's resolver (c-ares, written by others) for answers, and a
// raw UDP/TCP socket for what no polite client sends. `dig` is not installed on this machine, so it is not used.

type Entry = { id: string; address: string; port: number; passing: boolean };

const SERVICES: Record<string, Entry[]> = {
  'default/web': [
    { id: 'web-1', address: '10.0.0.1', port: 8080, passing: true },
    { id: 'web-2', address: '10.0.0.2', port: 8081, passing: true },
    { id: 'web-3', address: '10.0.0.3', port: 8082, passing: false },
    { id: 'Web.Upper:1', address: '10.0.0.4', port: 8083, passing: true },
    { id: 'web-v6', address: '2001:db8::1', port: 8084, passing: true },
    { id: 'web-v6-sick', address: '2001:db8::2', port: 8085, passing: false },
    { id: 'web-host', address: 'db.example.internal', port: 5432, passing: true },
  ],
  'default/shuffled': Array.from({ length: 8 }, (_, i) => ({ id: `s-${i}`, address: `10.1.0.${i + 1}`, port: 80, passing: true })),
  'default/big': Array.from({ length: 150 }, (_, i) => ({ id: `b-${i}`, address: `10.2.${i >> 8}.${i & 255}`, port: 80, passing: true })),
  'default/down': [{ id: 'down-1', address: '10.3.0.1', port: 80, passing: false }],
  'default/sentinel': [{ id: 'sentinel-1', address: '10.9.9.9', port: 53, passing: true }],
  'prod/api': [{ id: 'api-1', address: '192.168.1.1', port: 443, passing: true }],
};

const catalog: DnsCatalog = {
  passingInstances(namespace, service) {
    if (service === 'boom') throw new Error('catalog unavailable');
    const entries = SERVICES[`${namespace}/${service}`];
    return entries ? entries.filter((e) => e.passing).map(({ id, address, port }) => ({ id, address, port })) : null;
  },
};

const TYPE = { A: 1, SOA: 6, TXT: 16, AAAA: 28, SRV: 33 };
const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4 };

// ---- a raw DNS client, written against RFC 1035 §4.1 and not against the code under test ----

function encodeName(name: string): Buffer {
  const labels = name.split('.').filter((l) => l !== '');
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
}

function header(id: number, counts: { qd?: number; an?: number; ns?: number; ar?: number } = {}, flags = 0x0100): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(flags, 2);
  h.writeUInt16BE(counts.qd ?? 1, 4);
  h.writeUInt16BE(counts.an ?? 0, 6);
  h.writeUInt16BE(counts.ns ?? 0, 8);
  h.writeUInt16BE(counts.ar ?? 0, 10);
  return h;
}

/** RFC 6891 §6.1.2: root owner, type OPT, class = UDP payload size, TTL = ext-rcode | version | flags, no options. */
function opt(payload: number, version = 0): Buffer {
  return Buffer.from([0, 0, 41, payload >> 8, payload & 255, 0, version, 0, 0, 0, 0]);
}

function question(name: string, qtype: number): Buffer {
  return Buffer.concat([encodeName(name), Buffer.from([qtype >> 8, qtype & 255, 0, 1])]);
}

function query(name: string, qtype: number, id: number, edns?: { payload: number; version?: number }): Buffer {
  return Buffer.concat([header(id, { ar: edns ? 1 : 0 }), question(name, qtype), edns ? opt(edns.payload, edns.version) : Buffer.alloc(0)]);
}

const idOf = (b: Buffer) => b.readUInt16BE(0);
const rcodeOf = (b: Buffer) => b[3]! & 0x0f;
const isReply = (b: Buffer) => (b[2]! & 0x80) !== 0;
const truncated = (b: Buffer) => (b[2]! & 0x02) !== 0;
const counts = (b: Buffer) => ({ qd: b.readUInt16BE(4), an: b.readUInt16BE(6), ns: b.readUInt16BE(8), ar: b.readUInt16BE(10) });

/** A name at `at`, following compression pointers (RFC 1035 §4.1.4); returns it and where the field ends. */
function readName(b: Buffer, at: number): { name: string; end: number } {
  const labels: string[] = [];
  let end = -1;
  for (let hops = 0; hops < 64; hops++) {
    const len = b[at]!;
    if (len === 0) return { name: labels.join('.'), end: end < 0 ? at + 1 : end };
    if (len >= 0xc0) {
      if (end < 0) end = at + 2;
      at = ((len & 0x3f) << 8) | b[at + 1]!;
      continue;
    }
    labels.push(b.toString('latin1', at + 1, at + 1 + len));
    at += 1 + len;
  }
  throw new Error('pointer loop');
}

/** Every record of a reply, section by section, with A/AAAA addresses and SRV targets decoded. */
function records(b: Buffer): { section: string; name: string; type: number; data: string }[] {
  const c = counts(b);
  let at = c.qd === 0 ? 12 : readName(b, 12).end + 4;
  const out: { section: string; name: string; type: number; data: string }[] = [];
  for (const [section, n] of [['answer', c.an], ['authority', c.ns], ['additional', c.ar]] as const) {
    for (let i = 0; i < n; i++) {
      const { name, end } = readName(b, at);
      const type = b.readUInt16BE(end);
      const rdata = end + 10;
      const rdlength = b.readUInt16BE(end + 8);
      let data = b.toString('hex', rdata, rdata + rdlength);
      if (type === TYPE.A) data = [...b.subarray(rdata, rdata + 4)].join('.');
      if (type === TYPE.AAAA) data = Array.from({ length: 8 }, (_, g) => b.readUInt16BE(rdata + 2 * g).toString(16)).join(':');
      if (type === TYPE.SRV) data = `${b.readUInt16BE(rdata + 4)} ${readName(b, rdata + 6).name}`;
      out.push({ section, name, type, data });
      at = rdata + rdlength;
    }
  }
  assert.equal(at, b.length, 'the records fill the message exactly');
  return out;
}

const SENTINEL = question('sentinel.service.aegis', TYPE.A);

class RawUdp {
  private readonly replies: Buffer[] = [];
  private wake: (() => void) | null = null;
  private constructor(private readonly socket: UdpSocket, private readonly port: number) {
    socket.on('message', (msg) => {
      this.replies.push(msg);
      this.wake?.();
    });
  }

  static async open(port: number): Promise<RawUdp> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    onCleanup(() => socket.close());
    return new RawUdp(socket, port);
  }

  /**
   * Sends `packets`, then a good query, and returns every reply that came before the good one's (the server answers
   * in order, so a reply that was coming has come) with the good reply itself: proof the server still answers.
   */
  async exchange(packets: Buffer[]): Promise<{ replies: Buffer[]; sentinel: Buffer }> {
    this.replies.length = 0;
    const id = 0xfeed;
    for (const p of packets) this.socket.send(p, this.port, '127.0.0.1');
    this.socket.send(Buffer.concat([header(id), SENTINEL]), this.port, '127.0.0.1');
    const deadline = Date.now() + 3000;
    for (;;) {
      const at = this.replies.findIndex((r) => r.length >= 12 + SENTINEL.length && idOf(r) === id && r.subarray(12, 12 + SENTINEL.length).equals(SENTINEL));
      if (at >= 0) {
        const sentinel = this.replies[at]!;
        assert.equal(rcodeOf(sentinel), RCODE.NOERROR, 'the good query after the bad ones is answered');
        return { replies: this.replies.slice(0, at), sentinel };
      }
      const left = deadline - Date.now();
      assert.ok(left > 0, 'the server stopped answering');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  /** One query's reply. */
  async ask(packet: Buffer): Promise<Buffer> {
    const { replies } = await this.exchange([packet]);
    assert.equal(replies.length, 1, 'exactly one reply');
    return replies[0]!;
  }
}

/** Frames `messages` (RFC 1035 §4.2.2) in one write and reads replies until `expect` arrive or the server closes. */
async function overTcp(port: number, messages: Buffer[], expect: number): Promise<{ replies: Buffer[]; closed: boolean }> {
  const socket = connect(port, '127.0.0.1');
  const replies: Buffer[] = [];
  let pending = Buffer.alloc(0);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('TCP replies did not arrive'));
    }, 3000);
    const done = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ replies, closed });
    };
    socket.on('error', () => done(true));
    socket.on('close', () => done(true));
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        replies.push(pending.subarray(2, 2 + pending.readUInt16BE(0)));
        pending = pending.subarray(2 + pending.readUInt16BE(0));
      }
      if (replies.length >= expect) done(false);
    });
    socket.write(Buffer.concat(messages.map((m) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 255]), m]))));
  });
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, code);
    return true;
  });
}

const warnings: string[] = [];
let server: RunningDns;
let resolver: Resolver;
let raw: RawUdp;

before(async () => {
  server = await startDnsServer({ catalog, address: '127.0.0.1', port: 0, logger: { warn: (_obj, msg) => warnings.push(msg) } });
  onCleanup(() => server.close());
  resolver = new Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([`127.0.0.1:${server.port}`]);
  raw = await RawUdp.open(server.port);
});

describe('answers from the catalog (node resolver over UDP)', () => {
  it('A lists only the passing instances with IPv4 addresses', async () => {
    assert.deepEqual((await resolver.resolve4('web.service.aegis')).sort(), ['10.0.0.1', '10.0.0.2', '10.0.0.4']);
  });

  it('AAAA lists only the passing instances with IPv6 addresses', async () => {
    assert.deepEqual(await resolver.resolve6('web.service.aegis'), ['2001:db8::1']);
  });

  it('SRV names every passing instance with its port, priority 1 and weight 1', async () => {
    const hashed = `h-${createHash('sha256').update('Web.Upper:1').digest('hex').slice(0, 32)}`;
    const got = (await resolver.resolveSrv('web.service.aegis')).sort((a, b) => a.port - b.port);
    assert.deepEqual(got, [
      // An instance registered by host name is reached at that name.
      { name: 'db.example.internal', port: 5432, priority: 1, weight: 1 },
      { name: 'web-1.instance.default.aegis', port: 8080, priority: 1, weight: 1 },
      { name: 'web-2.instance.default.aegis', port: 8081, priority: 1, weight: 1 },
      // An id that is not a lowercase DNS label is named by its hash.
      { name: `${hashed}.instance.default.aegis`, port: 8083, priority: 1, weight: 1 },
      { name: 'web-v6.instance.default.aegis', port: 8084, priority: 1, weight: 1 },
    ]);
  });

  it('SRV targets resolve to their instance, and come with its address in the additional section', async () => {
    const srv = await resolver.resolveSrv('web.service.default.aegis');
    const byPort = new Map(srv.map((s) => [s.port, s.name]));
    assert.deepEqual(await resolver.resolve4(byPort.get(8080)!), ['10.0.0.1']);
    assert.deepEqual(await resolver.resolve4(byPort.get(8083)!.toUpperCase()), ['10.0.0.4']);
    assert.deepEqual(await resolver.resolve6(byPort.get(8084)!), ['2001:db8::1']);
    await rejectsWith(resolver.resolve6(byPort.get(8080)!), 'ENODATA');
    await rejectsWith(resolver.resolve4('nobody.instance.default.aegis'), 'ENOTFOUND');
    // Four targets are IP literals: their A/AAAA records ride along (no OPT was sent, so none comes back).
    const reply = await raw.ask(query('web.service.aegis', TYPE.SRV, 0x0101));
    assert.deepEqual(counts(reply), { qd: 1, an: 5, ns: 0, ar: 4 });
    const all = records(reply);
    const additional = new Map(all.filter((r) => r.section === 'additional').map((r) => [r.name, r.data]));
    const targets = new Map(all.filter((r) => r.type === TYPE.SRV).map((r) => [Number(r.data.split(' ')[0]), r.data.split(' ')[1]!]));
    assert.equal(additional.get(targets.get(8080)!), '10.0.0.1');
    assert.equal(additional.get(targets.get(8083)!), '10.0.0.4');
    assert.equal(additional.get(targets.get(8084)!), '2001:db8:0:0:0:0:0:1');
    assert.equal(additional.has('db.example.internal'), false);
  });

  it('the namespace form and the default form name the same service; other namespaces are apart', async () => {
    assert.deepEqual((await resolver.resolve4('web.service.default.aegis')).sort(), ['10.0.0.1', '10.0.0.2', '10.0.0.4']);
    assert.deepEqual(await resolver.resolve4('api.service.prod.aegis'), ['192.168.1.1']);
    assert.deepEqual(await resolver.resolveSrv('api.service.prod.aegis'), [{ name: 'api-1.instance.prod.aegis', port: 443, priority: 1, weight: 1 }]);
    assert.deepEqual(await resolver.resolve4('api-1.instance.prod.aegis'), ['192.168.1.1']);
    await rejectsWith(resolver.resolve4('api.service.aegis'), 'ENOTFOUND');
  });

  it('names match whatever their case, with or without the trailing dot, and the question comes back byte for byte', async () => {
    assert.deepEqual((await resolver.resolve4('WeB.SeRvIcE.DeFaUlT.AEGIS')).sort(), ['10.0.0.1', '10.0.0.2', '10.0.0.4']);
    assert.deepEqual((await resolver.resolve4('web.service.aegis.')).sort(), ['10.0.0.1', '10.0.0.2', '10.0.0.4']);
    // Clients that randomise case (DNS 0x20) drop a reply whose question does not match theirs exactly.
    const q = question('wEb.SERVICE.aEgIs', TYPE.A);
    const reply = await raw.ask(Buffer.concat([header(0x0202), q]));
    assert.equal(rcodeOf(reply), RCODE.NOERROR);
    assert.equal(counts(reply).an, 3);
    assert.ok(reply.subarray(12, 12 + q.length).equals(q));
  });

  it('each answer lists the instances in a new random order', async () => {
    const orders = new Set<string>();
    const firsts = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const got = await resolver.resolve4('shuffled.service.aegis');
      assert.deepEqual([...got].sort(), SERVICES['default/shuffled']!.map((e) => e.address).sort());
      orders.add(got.join(','));
      firsts.add(got[0]!);
    }
    // 40 draws of 8! orders: the chance of seeing fewer than 10 orders or 3 leaders by luck is far below 1e-9.
    assert.ok(orders.size >= 10, `only ${orders.size} distinct orders`);
    assert.ok(firsts.size >= 3, `only ${firsts.size} distinct first addresses`);
  });

  it('an unknown service, an unknown name or another domain is NXDOMAIN', async () => {
    for (const name of ['nope.service.aegis', 'nope.service.prod.aegis', 'web.nosuch.aegis', 'x.web.service.default.aegis', 'web.service.other', 'example.com']) {
      await rejectsWith(resolver.resolve4(name), 'ENOTFOUND');
    }
    const inZone = await raw.ask(query('nope.service.aegis', TYPE.A, 0x0303));
    assert.equal(rcodeOf(inZone), RCODE.NXDOMAIN);
    assert.deepEqual(counts(inZone), { qd: 1, an: 0, ns: 1, ar: 0 }, 'the SOA lets resolvers cache the absence');
    assert.equal(rcodeOf(await raw.ask(query('web.service.other', TYPE.A, 0x0304))), RCODE.NXDOMAIN);
    const soa = await resolver.resolveSoa('aegis');
    assert.equal(soa.nsname, 'ns.aegis');
    assert.equal(soa.minttl, 0);
  });

  it('a known service with no passing instance answers NOERROR with no records, as Consul does', async () => {
    await rejectsWith(resolver.resolve4('down.service.aegis'), 'ENODATA');
    await rejectsWith(resolver.resolveSrv('down.service.aegis'), 'ENODATA');
    const reply = await raw.ask(query('down.service.aegis', TYPE.A, 0x0404));
    assert.equal(rcodeOf(reply), RCODE.NOERROR);
    assert.equal(counts(reply).an, 0);
    // Names above a service exist too (RFC 8020: an NXDOMAIN there would hide every service below).
    await rejectsWith(resolver.resolve4('service.aegis'), 'ENODATA');
    await rejectsWith(resolver.resolve4('service.prod.aegis'), 'ENODATA');
  });

  it('an unsupported query type gets an empty NOERROR', async () => {
    await rejectsWith(resolver.resolveTxt('web.service.aegis'), 'ENODATA');
    const reply = await raw.ask(query('web.service.aegis', TYPE.TXT, 0x0505));
    assert.equal(rcodeOf(reply), RCODE.NOERROR);
    assert.equal(counts(reply).an, 0);
  });

  it('a catalog failure is answered SERVFAIL and logged, and the server goes on', async () => {
    const before = warnings.length;
    await rejectsWith(resolver.resolve4('boom.service.aegis'), 'ESERVFAIL');
    assert.equal(warnings.length, before + 1);
    assert.match(warnings.at(-1)!, /SERVFAIL/);
    assert.equal((await resolver.resolve4('api.service.prod.aegis')).length, 1);
  });

  it('an answer too big for UDP is truncated (TC) and the resolver gets all of it over TCP', async () => {
    const udp = await raw.ask(query('big.service.aegis', TYPE.A, 0x0606));
    assert.ok(truncated(udp));
    assert.ok(udp.length <= 512);
    const withEdns = await raw.ask(query('big.service.aegis', TYPE.A, 0x0607, { payload: 4096 }));
    assert.ok(truncated(withEdns));
    assert.ok(withEdns.length <= 1232, 'EDNS replies stay within 1232 bytes whatever the client offers');
    const all = await resolver.resolve4('big.service.aegis');
    assert.deepEqual(all.sort(), SERVICES['default/big']!.map((e) => e.address).sort());
  });

  it('answers pipelined queries over TCP in order', async () => {
    const { replies } = await overTcp(server.port, [query('web.service.aegis', TYPE.A, 1), query('nope.service.aegis', TYPE.A, 2), query('api.service.prod.aegis', TYPE.SRV, 3)], 3);
    assert.deepEqual(replies.map(idOf), [1, 2, 3]);
    assert.deepEqual(replies.map(rcodeOf), [RCODE.NOERROR, RCODE.NXDOMAIN, RCODE.NOERROR]);
    assert.equal(counts(replies[0]!).an, 3);
  });
});

describe('malformed queries: FORMERR or silence, never a crash', () => {
  const random = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(Math.random() * 256)));
  const formerrOrNothing = (replies: Buffer[], id?: number) => {
    for (const r of replies) {
      assert.ok(isReply(r));
      assert.equal(rcodeOf(r), RCODE.FORMERR);
      if (id !== undefined) assert.equal(idOf(r), id);
    }
  };

  it('random bytes', async () => {
    const packets = Array.from({ length: 20 }, (_, i) => {
      const p = random(12 + i * 13);
      p[2]! &= 0x07; // a query (QR=0) with opcode QUERY, so nothing but its format is wrong
      return p;
    });
    formerrOrNothing((await raw.exchange(packets)).replies);
  });

  it('a truncated header gets no reply (there is no id to answer)', async () => {
    const { replies } = await raw.exchange([Buffer.alloc(0), Buffer.from([0x12]), header(0x1234).subarray(0, 5), header(0x1234).subarray(0, 11)]);
    assert.deepEqual(replies, []);
  });

  it('a header claiming 5 questions with none is FORMERR', async () => {
    const { replies } = await raw.exchange([header(0x0505, { qd: 5 })]);
    assert.equal(replies.length, 1);
    formerrOrNothing(replies, 0x0505);
  });

  it('zero questions, several questions, or answers in a query are FORMERR', async () => {
    const q = question('web.service.aegis', TYPE.A);
    const { replies } = await raw.exchange([header(0x0601, { qd: 0 }), Buffer.concat([header(0x0602, { qd: 2 }), q, q]), Buffer.concat([header(0x0603, { an: 1 }), q]), Buffer.concat([header(0x0604, { ar: 65535 }), q])]);
    assert.deepEqual(replies.map(idOf), [0x0601, 0x0602, 0x0603, 0x0604]);
    formerrOrNothing(replies);
  });

  it('over-long labels and names, pointers and cut-off questions are FORMERR', async () => {
    const tail = Buffer.from([0, 0, 1, 0, 1]);
    const bad = [
      // A 300-byte label: its length does not fit the 6 bits a label length has.
      Buffer.concat([Buffer.from([300 >> 8, 300 & 255]), Buffer.alloc(300, 'a'), tail]),
      Buffer.concat([Buffer.from([0x7f]), Buffer.alloc(127, 'a'), tail]),
      // 5 labels of 59 bytes: 300 bytes, over the 255 a name may have.
      Buffer.concat([...Array.from({ length: 5 }, () => Buffer.concat([Buffer.from([59]), Buffer.alloc(59, 'b')])), tail]),
      Buffer.from([0xc0, 0x0c, 0, 1, 0, 1]), // a pointer to itself
      Buffer.from([3, 0x77, 0x65]), // the name stops mid-label
      Buffer.concat([encodeName('web.service.aegis'), Buffer.from([0, 1])]), // no class
    ];
    const { replies } = await raw.exchange(bad.map((body, i) => Buffer.concat([header(0x0700 + i), body])));
    assert.deepEqual(replies.map(idOf), bad.map((_, i) => 0x0700 + i));
    formerrOrNothing(replies);
  });

  it('a broken or doubled OPT record is FORMERR; an unknown EDNS version is BADVERS', async () => {
    const q = question('web.service.aegis', TYPE.A);
    const { replies } = await raw.exchange([
      Buffer.concat([header(0x0801, { ar: 1 }), q, opt(1232).subarray(0, 7)]),
      Buffer.concat([header(0x0802, { ar: 2 }), q, opt(1232), opt(1232)]),
    ]);
    assert.deepEqual(replies.map(idOf), [0x0801, 0x0802]);
    formerrOrNothing(replies);
    // RFC 6891 §6.1.3: BADVERS is 16, carried as 0 in the header and 1 in the OPT record's extended RCODE.
    const badvers = await raw.ask(query('web.service.aegis', TYPE.A, 0x0803, { payload: 1232, version: 1 }));
    assert.equal(rcodeOf(badvers), 0);
    assert.deepEqual(counts(badvers), { qd: 1, an: 0, ns: 0, ar: 1 });
    assert.equal(badvers[12 + q.length + 5], 1);
    const fine = await raw.ask(query('web.service.aegis', TYPE.A, 0x0804, { payload: 4096 }));
    assert.equal(counts(fine).ar, 1, 'an EDNS query gets an OPT record back');
  });

  it('an OPT with a cookie, followed by another record, is read; bytes after the last record are FORMERR', async () => {
    const q = question('web.service.aegis', TYPE.A);
    // RFC 7873 COOKIE option (code 10) with an 8-byte client cookie, as dig sends by default.
    const cookieOpt = Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    const other = Buffer.from([0, 0, 250, 0, 255, 0, 0, 0, 0, 0, 2, 0xab, 0xcd]);
    const withCookie = await raw.ask(Buffer.concat([header(0x0811, { ar: 2 }), q, cookieOpt, other]));
    assert.equal(rcodeOf(withCookie), RCODE.NOERROR);
    assert.deepEqual(counts(withCookie), { qd: 1, an: 3, ns: 0, ar: 1 });
    const { replies } = await raw.exchange([Buffer.concat([header(0x0812), q, Buffer.from([0])]), Buffer.concat([header(0x0813, { ar: 1 }), q, opt(1232), Buffer.from([1, 2])])]);
    assert.deepEqual(replies.map(idOf), [0x0812, 0x0813]);
    formerrOrNothing(replies);
  });

  it('a response is not answered, and other opcodes are NOTIMP', async () => {
    const q = question('web.service.aegis', TYPE.A);
    const { replies } = await raw.exchange([Buffer.concat([header(0x0901, {}, 0x8100), q]), Buffer.concat([header(0x0902, {}, 0x2800), q])]);
    assert.deepEqual(replies.map(idOf), [0x0902]);
    assert.equal(rcodeOf(replies[0]!), RCODE.NOTIMP);
  });

  it('over TCP, a bad message is FORMERR and garbage ends the connection; the server keeps serving', async () => {
    const bad = await overTcp(server.port, [header(0x0a01, { qd: 5 }), query('web.service.aegis', TYPE.A, 0x0a02)], 2);
    assert.deepEqual(bad.replies.map(idOf), [0x0a01, 0x0a02]);
    assert.deepEqual(bad.replies.map(rcodeOf), [RCODE.FORMERR, RCODE.NOERROR]);
    const garbage = await overTcp(server.port, [Buffer.from([1, 2, 3])], 1);
    assert.deepEqual(garbage, { replies: [], closed: true });
    assert.equal((await resolver.resolve4('api.service.prod.aegis')).length, 1);
  });

  it('2,000 random and mutated packets: every reply is well formed, nothing is logged, the server still answers', { timeout: 10_000 }, async () => {
    // A seeded generator, so a failure can be replayed: the seed is in the message.
    const seed = Date.now() >>> 0;
    let state = seed;
    const next = () => {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const int = (n: number) => Math.floor(next() * n);
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
    const seeds = [
      query('web.service.aegis', TYPE.SRV, 1),
      query('web.service.default.aegis', TYPE.A, 2, { payload: 4096 }),
      query('big.service.aegis', TYPE.AAAA, 3),
      query('x.instance.prod.aegis', TYPE.A, 4, { payload: 512 }),
    ];
    const packet = (): Buffer => {
      switch (int(3)) {
        case 0:
          return bytes(int(600));
        case 1: {
          const p = Buffer.from(seeds[int(seeds.length)]!);
          for (let k = 1 + int(4); k > 0; k--) p[int(p.length)] = int(256);
          return int(4) === 0 ? p.subarray(0, int(p.length)) : int(4) === 0 ? Buffer.concat([p, bytes(int(40))]) : p;
        }
        default: {
          const h = bytes(12);
          h[2]! &= 0x07;
          h.writeUInt16BE(int(3), 4);
          h.writeUInt16BE(int(2) * int(3), 10);
          return Buffer.concat([h, bytes(int(300))]);
        }
      }
    };
    const before = warnings.length;
    const started = Date.now();
    let answered = 0;
    for (let batch = 0; batch < 20; batch++) {
      const { replies } = await raw.exchange(Array.from({ length: 100 }, packet));
      for (const r of replies) {
        assert.ok(r.length >= 12 && isReply(r), `seed ${seed}: a reply must be a DNS response`);
        assert.ok([RCODE.NOERROR, RCODE.FORMERR, RCODE.NXDOMAIN, RCODE.NOTIMP, 5].includes(rcodeOf(r)), `seed ${seed}: rcode ${rcodeOf(r)}`);
        assert.ok(counts(r).qd <= 1, `seed ${seed}: at most the one question is echoed`);
        records(r); // and the rest of the reply decodes exactly
      }
      answered += replies.length;
    }
    assert.deepEqual(warnings.slice(before), [], `seed ${seed}: no packet may reach the catch-all`);
    assert.ok(answered > 0);
    assert.ok(Date.now() - started < 8000, `seed ${seed}: fuzzing took ${Date.now() - started} ms`);
    assert.equal((await resolver.resolve4('api.service.prod.aegis'))[0], '192.168.1.1');
  });
});

describe('startDnsServer', () => {
  it('binds only the address it is given', async () => {
    assert.equal(server.address, '127.0.0.1');
    // 127.0.0.2 is loopback too on Linux: a wildcard bind would accept this connection.
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = connect(server.port, '127.0.0.2');
        s.on('connect', () => {
          s.destroy();
          resolve('connected');
        });
        s.on('error', reject);
      }),
      /ECONNREFUSED/,
    );
  });

  it('refuses an address that is not an IP literal and a domain that is not a host name', async () => {
    await assert.rejects(startDnsServer({ catalog, address: 'localhost', port: 0 }), /IPv4 or IPv6 literal/);
    await assert.rejects(startDnsServer({ catalog, address: '127.0.0.1', port: 0, domain: 'bad domain' }), /not valid/);
    await assert.rejects(startDnsServer({ catalog, address: '127.0.0.1', port: 0, ttl: -1 }), /ttl/);
  });

  it('serves another domain and TTL, and close() frees the port', async () => {
    const other = await startDnsServer({ catalog, address: '127.0.0.1', port: 0, domain: 'Mesh.Internal.', ttl: 30 });
    const r = new Resolver({ timeout: 2000, tries: 1 });
    r.setServers([`127.0.0.1:${other.port}`]);
    assert.deepEqual(await r.resolve4('api.service.prod.mesh.internal', { ttl: true }), [{ address: '192.168.1.1', ttl: 30 }]);
    await rejectsWith(r.resolve4('api.service.prod.aegis'), 'ENOTFOUND');
    await other.close();
    await other.close();
    const again = await startDnsServer({ catalog, address: '127.0.0.1', port: other.port });
    await again.close();
  });
});
