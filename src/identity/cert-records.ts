import type { SecureStore, SecureTxnOp } from '../core/barrier/index.js';
import { idKey, serialKey } from './revocations.js';

// Every issued certificate is recorded (Vault's `pki/cert/:serial`; revoking a SPIFFE ID must find its serials
// for the CRL), and each caller waits for its record's commit before the certificate leaves the server (a
// certificate is never handed out unrecorded). The records asked for in one turn of the event loop (or until
// GROUP_MAX are waiting) go to storage as one transaction; storage's write thread then commits whatever arrives
// while a commit is running in the next one, so under load many certificates share one fsync without a timer.

const CERTS = 'certs/';
const BY_ID = 'certs-by-id/';
const GROUP_MAX = 64;

export interface CertRecord {
  serial_number: string;
  spiffe_id: string | null;
  certificate: string;
  issuer_id: number;
  not_after: string;
  revoked_at?: string;
}

export class CertRecords {
  private pending: { record: CertRecord; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private scheduled: NodeJS.Immediate | null = null;

  constructor(private readonly store: SecureStore) {}

  add(record: CertRecord): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ record, resolve, reject });
      if (this.pending.length >= GROUP_MAX) void this.flush();
      else this.scheduled ??= setImmediate(() => void this.flush());
    });
  }

  async get(serial: string): Promise<CertRecord | null> {
    const got = await this.store.get(CERTS + serialKey(serial));
    return got ? (JSON.parse(got.value.toString('utf8')) as CertRecord) : null;
  }

  async markRevoked(serial: string, revokedAt: string): Promise<void> {
    const rec = await this.get(serial);
    if (!rec) return;
    await this.store.put(CERTS + serialKey(serial), { ...rec, revoked_at: revokedAt });
  }

  async list(): Promise<string[]> {
    return this.store.list(CERTS);
  }

  /** Serials issued to `spiffeId` (hex keys). */
  async serialsOf(spiffeId: string): Promise<string[]> {
    return this.store.list(`${BY_ID}${idKey(spiffeId)}/`);
  }


  private async flush(): Promise<void> {
    const batch = this.pending.splice(0);
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = null;
    if (batch.length === 0) return;
    const ops: SecureTxnOp[] = [];
    for (const { record } of batch) {
      const key = serialKey(record.serial_number);
      ops.push({ type: 'put', key: CERTS + key, value: record });
      if (record.spiffe_id) ops.push({ type: 'put', key: `${BY_ID}${idKey(record.spiffe_id)}/${key}`, value: Buffer.alloc(0) });
    }
    try {
      await this.store.txn(ops);
      for (const p of batch) p.resolve();
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }
}
