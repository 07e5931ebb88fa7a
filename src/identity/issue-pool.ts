import type { KeyObject } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { AegisError, type ErrorCode } from '../core/errors.js';
import { issueLeaf, type IssueReply, type IssueRequest } from './issue-worker.js';

// Leaf issuance is two signatures' worth of CPU (verify the CSR, sign the leaf) plus ASN.1 parsing: on a
// server that also terminates TLS and writes audit, it is the part that moves to other cores. Jobs go to
// the worker with the fewest in flight; with size 0 they run on the calling thread.

export interface IssueJob {
  csr: string;
  spiffeId: string;
  notBefore: Date;
  notAfter: Date;
  issuer: { id: number; certDer: Buffer; key: KeyObject };
}

export interface Issued {
  der: Buffer;
  serial: Buffer;
  notAfter: Date;
}

interface Slot {
  worker: Worker;
  inFlight: number;
  issuers: Set<number>;
}

const WORKER_URL = new URL(`./issue-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

function startWorker(): Worker {
  if (!WORKER_URL.pathname.endsWith('.ts')) return new Worker(WORKER_URL);
  // From a source checkout the worker is TypeScript: load it through tsx, as the main thread was.
  const boot = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(WORKER_URL.href)}); });`;
  return new Worker(boot, { eval: true });
}

class ClientError extends AegisError {}

export class IssuePool {
  private readonly slots: Slot[] = [];
  private readonly pending = new Map<number, { resolve: (r: Issued) => void; reject: (e: Error) => void; slot: Slot }>();
  private nextId = 1;
  private closed = false;

  constructor(size = Math.max(1, availableParallelism())) {
    for (let i = 0; i < size; i++) {
      const worker = startWorker();
      const slot: Slot = { worker, inFlight: 0, issuers: new Set() };
      worker.unref();
      worker.on('message', (reply: IssueReply) => this.settle(reply));
      worker.on('error', (err) => this.fail(slot, err));
      worker.on('exit', (code) => {
        if (this.closed) return;
        // A dead worker takes no more jobs; with none left, jobs run on this thread.
        this.slots.splice(this.slots.indexOf(slot), 1);
        this.fail(slot, new Error(`issuing worker exited with code ${code}`));
      });
      this.slots.push(slot);
    }
  }

  get size(): number {
    return this.slots.length;
  }

  issue(job: IssueJob): Promise<Issued> {
    const req: IssueRequest = {
      id: this.nextId++, csr: job.csr, spiffeId: job.spiffeId, notBefore: job.notBefore.getTime(), notAfter: job.notAfter.getTime(), issuerId: job.issuer.id,
    };
    if (this.slots.length === 0) {
      try {
        return Promise.resolve(issueLeaf(req, job.issuer));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.inFlight < slot.inFlight) slot = s;
    if (!slot.issuers.has(job.issuer.id)) {
      req.issuer = { certDer: job.issuer.certDer, key: job.issuer.key };
      slot.issuers.add(job.issuer.id);
    }
    slot.inFlight += 1;
    return new Promise((resolve, reject) => {
      this.pending.set(req.id, { resolve, reject, slot });
      slot.worker.postMessage(req);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    for (const [, p] of this.pending) p.reject(new Error('the issuing pool was closed'));
    this.pending.clear();
  }

  private settle(reply: IssueReply): void {
    const p = this.pending.get(reply.id);
    if (!p) return;
    this.pending.delete(reply.id);
    p.slot.inFlight -= 1;
    if (reply.ok) p.resolve({ der: Buffer.from(reply.der), serial: Buffer.from(reply.serial), notAfter: new Date(reply.notAfter) });
    else if (reply.status < 500) p.reject(new ClientError(reply.code as ErrorCode, reply.message));
    else p.reject(new Error(reply.message));
  }

  private fail(slot: Slot, err: Error): void {
    for (const [id, p] of this.pending) {
      if (p.slot !== slot) continue;
      this.pending.delete(id);
      p.reject(err);
    }
    slot.inFlight = 0;
  }
}
