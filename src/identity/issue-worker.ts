import type { KeyObject } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { AegisError } from '../core/errors.js';
import { parseCsr } from './csr.js';
import { LeafBuilder } from './leaf-builder.js';

// The CPU-heavy half of issuing an X.509-SVID, run in a worker thread: parse and verify the CSR, fill the leaf
// template, sign it. The main thread keeps HTTP, authorization, audit and storage.

export interface IssueRequest {
  id: number;
  csr: string;
  spiffeId: string;
  notBefore: number;
  notAfter: number;
  issuerId: number;
  /** Sent the first time this worker sees an issuer. */
  issuer?: { certDer: Uint8Array; key: KeyObject };
}

export type IssueReply =
  | { id: number; ok: true; der: Uint8Array; serial: Uint8Array; notAfter: number }
  | { id: number; ok: false; status: number; code: string; message: string };

const builder = new LeafBuilder();
const issuers = new Map<number, { certDer: Buffer; key: KeyObject }>();

/** The leaf's validity may be clamped to the issuer's and is written in whole seconds: `notAfter` is what it holds. */
export function issueLeaf(req: IssueRequest, issuer: { certDer: Buffer; key: KeyObject }): { der: Buffer; serial: Buffer; notAfter: Date } {
  const parsed = parseCsr(req.csr, { expectedSpiffeId: req.spiffeId });
  return builder.build(issuer, { spiffeId: req.spiffeId, spki: parsed.spki, keyType: parsed.keyType, notBefore: new Date(req.notBefore), notAfter: new Date(req.notAfter) });
}

if (parentPort) {
  const port = parentPort;
  port.on('message', (req: IssueRequest) => {
    let reply: IssueReply;
    try {
      if (req.issuer) issuers.set(req.issuerId, { certDer: Buffer.from(req.issuer.certDer), key: req.issuer.key });
      const issuer = issuers.get(req.issuerId);
      if (!issuer) throw new Error(`issuer ${req.issuerId} was never sent to this worker`);
      const { der, serial, notAfter } = issueLeaf(req, issuer);
      reply = { id: req.id, ok: true, der, serial, notAfter: notAfter.getTime() };
    } catch (err) {
      const e = err as Error;
      reply = err instanceof AegisError
        ? { id: req.id, ok: false, status: err.status, code: err.code, message: err.message }
        : { id: req.id, ok: false, status: 500, code: 'internal', message: e.message };
    }
    port.postMessage(reply);
  });
}
