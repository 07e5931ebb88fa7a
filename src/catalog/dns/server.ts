import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, isIP, type Socket } from 'node:net';
import { BadRequestError } from '../../core/errors.js';
import type { DnsCatalog } from '../model.js';
import { newZone } from './answer.js';
import { domainLabels } from './names.js';
import { createResponder, type DnsLogger, type Responder } from './respond.js';

// The catalog's DNS interface on UDP and TCP, one port for both. Sockets are node's own: dns2's UDP server drops a
// message it cannot parse without a word, and its listen() treats port 0 as "no port"; here every message goes
// through the responder, which answers FORMERR or drops but never throws.

export interface DnsServerOptions {
  catalog: DnsCatalog;
  /** The IP literal to bind, e.g. 127.0.0.1. */
  address: string;
  /** 0 = any free port (the same one for UDP and TCP). */
  port: number;
  /** Default `aegis`. */
  domain?: string;
  /** Seconds; default 0, as Consul: answers reflect health at once. */
  ttl?: number;
  logger?: DnsLogger;
}

export interface RunningDns {
  port: number;
  address: string;
  close(): Promise<void>;
}

/** RFC 7766 §6.2.3: idle TCP connections are closed; clients reconnect when they need to. */
const TCP_IDLE_MS = 10_000;
const MAX_TCP_CONNECTIONS = 256;
/** A client that pipelines queries without reading its replies is cut off once this much waits for it. */
const MAX_TCP_BACKLOG = 256 * 1024;
/** With port 0 the UDP port is picked first; TCP may find it taken, so a few other ports are tried. */
const BIND_ATTEMPTS = 5;

const quiet: DnsLogger = { warn() {} };

export async function startDnsServer(opts: DnsServerOptions): Promise<RunningDns> {
  const family = isIP(opts.address);
  if (family === 0) throw new BadRequestError(`DNS address ${JSON.stringify(opts.address)} must be an IPv4 or IPv6 literal, such as 127.0.0.1`);
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) throw new BadRequestError(`DNS port must be a whole number from 0 to 65535, got ${opts.port}`);
  const ttl = opts.ttl ?? 0;
  if (!Number.isInteger(ttl) || ttl < 0 || ttl > 0x7fffffff) throw new BadRequestError(`DNS ttl must be a whole number of seconds from 0 to 2147483647, got ${ttl}`);
  const logger = opts.logger ?? quiet;
  const respond = createResponder(newZone(opts.catalog, domainLabels(opts.domain ?? 'aegis'), ttl), logger);

  for (let attempt = 1; ; attempt++) {
    const udp = await bindUdp(family, opts.address, opts.port, respond, logger);
    const port = udp.address().port;
    try {
      const closeTcp = await listenTcp(opts.address, port, respond, logger);
      let closing: Promise<void> | null = null;
      const close = () => (closing ??= Promise.all([new Promise<void>((resolve) => udp.close(() => resolve())), closeTcp()]).then(() => {}));
      return { port, address: opts.address, close };
    } catch (err) {
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      if (opts.port !== 0 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= BIND_ATTEMPTS) throw err;
    }
  }
}

async function bindUdp(family: number, address: string, port: number, respond: Responder, logger: DnsLogger): Promise<UdpSocket> {
  const udp = createSocket({ type: family === 6 ? 'udp6' : 'udp4', ipv6Only: family === 6 });
  udp.on('message', (msg, peer) => {
    const reply = respond(msg, 'udp');
    if (reply === null) return;
    try {
      udp.send(reply, peer.port, peer.address, (err) => {
        if (err) logger.warn({ err, peer: peer.address }, 'DNS: could not send a UDP reply');
      });
    } catch (err) {
      // Synchronous refusals: a spoofed source port 0, or a reply racing close().
      logger.warn({ err, peer: peer.address }, 'DNS: could not send a UDP reply');
    }
  });
  const bound = once(udp, 'listening');
  udp.bind({ port, address, exclusive: true });
  try {
    await bound; // once() rejects on 'error' (EADDRINUSE, EADDRNOTAVAIL)
  } catch (err) {
    udp.close();
    throw err;
  }
  udp.on('error', (err) => logger.warn({ err }, 'DNS: UDP socket error'));
  return udp;
}

/** Listens, and returns how to stop: close the listener and end every open connection. */
async function listenTcp(address: string, port: number, respond: Responder, logger: DnsLogger): Promise<() => Promise<void>> {
  const open = new Set<Socket>();
  const tcp = createServer((socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    serveConnection(socket, respond);
  });
  tcp.maxConnections = MAX_TCP_CONNECTIONS;
  const listening = once(tcp, 'listening');
  tcp.listen({ port, host: address, exclusive: true });
  await listening; // once() rejects on 'error' (EADDRINUSE)
  tcp.on('error', (err) => logger.warn({ err }, 'DNS: TCP server error'));
  return () => {
    const closed = new Promise<void>((resolve) => tcp.close(() => resolve()));
    for (const socket of open) socket.destroy(); // close() would wait for idle clients
    return closed;
  };
}

/** RFC 1035 §4.2.2 / RFC 7766 §6.2.1: length-prefixed messages, pipelined, answered in order. */
function serveConnection(socket: Socket, respond: Responder): void {
  let pending: Buffer = Buffer.alloc(0);
  socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
  socket.on('error', () => {}); // resets by the peer are routine; the socket is gone either way
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 2) {
      const length = pending.readUInt16BE(0);
      if (pending.length < 2 + length) break;
      const reply = respond(pending.subarray(2, 2 + length), 'tcp');
      pending = pending.subarray(2 + length);
      // Nothing to answer with (not even a header): the stream is not DNS, so stop reading it.
      if (reply === null || socket.writableLength > MAX_TCP_BACKLOG) {
        socket.destroy();
        return;
      }
      const frame = Buffer.alloc(2 + reply.length);
      frame.writeUInt16BE(reply.length, 0);
      reply.copy(frame, 2);
      socket.write(frame);
    }
  });
}
