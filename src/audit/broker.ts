import { randomBytes } from 'node:crypto';
import type { SecureStore } from '../core/barrier/index.js';
import { AuditFailedError, BadRequestError, NotFoundError } from '../core/errors.js';
import type { Logger } from '../telemetry/logger.js';
import { chainBytes, type ChainState } from './chain.js';
import { formatRecord, type AuditRecord, type HmacMemo } from './entry.js';
import { FileSink } from './file-sink.js';
import { hmacValue, type RedactionMemo } from './hmac.js';
import { SinkWriteError, type AuditSink } from './sink.js';
import { StdoutSink } from './stdout-sink.js';

export interface AuditDeviceConfig {
  name: string;
  type: 'file' | 'stdout';
  description: string;
  options: Record<string, string>;
}

interface Device {
  config: AuditDeviceConfig;
  sink: AuditSink;
  key: Buffer;
  /** The chain position after the last line appended (written or waiting in `pending`). */
  chain: ChainState;
  /** Could not be opened at unseal; retried on reopen (SIGHUP). */
  broken?: boolean;
  memo: HmacMemo;
  redactions: RedactionMemo;
  pending: PendingLine[];
}

/** One record on its way to every device: settled when each device has written or failed its line. */
interface Waiter {
  remaining: number;
  written: number;
  resolve(): void;
  reject(err: Error): void;
}

interface PendingLine {
  line: Buffer;
  /** Chain positions before and after this line: the device rewinds to the last line actually written. */
  before: ChainState;
  after: ChainState;
  waiter: Waiter;
}

const CONFIG_KEY = 'core/audit';
const KEY_PREFIX = 'core/audit-key/';
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$/;

export function openSink(type: string, options: Record<string, string>): AuditSink {
  if (type === 'file') {
    const path = options.file_path ?? options.path;
    if (!path) throw new BadRequestError('a file audit device needs options.file_path (an absolute path)');
    const mode = options.mode ? parseInt(options.mode, 8) : 0o600;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) throw new BadRequestError('options.mode must be an octal file mode such as 0600');
    return new FileSink(path, mode);
  }
  if (type === 'stdout') return new StdoutSink();
  throw new BadRequestError(`unknown audit device type "${type}": use file or stdout`);
}

/**
 * Sends every audit record to every enabled device, each with its own HMAC key and hash chain. When devices are
 * enabled and none of them can write, `log` throws and the request is refused (audit fails closed).
 */
export class AuditBroker {
  private devices = new Map<string, Device>();

  constructor(
    private readonly store: SecureStore,
    private readonly logger: Logger,
    private readonly onFailure: (device: string) => void = () => undefined,
  ) {}

  async setup(): Promise<void> {
    const configs = (await this.store.getJson<AuditDeviceConfig[]>(CONFIG_KEY))?.value ?? [];
    for (const config of configs) {
      try {
        await this.attach(config);
      } catch (err) {
        // A device that cannot open now is reported; if it was the only one, requests fail closed until it is fixed.
        this.logger.error({ device: config.name, err: (err as Error).message }, 'audit device could not be opened');
        this.devices.set(config.name, { config, sink: brokenSink(config, (err as Error).message), key: Buffer.alloc(32), chain: { seq: 0, hash: '' }, broken: true, memo: new Map(), redactions: new Map(), pending: [] });
      }
    }
  }

  teardown(): void {
    this.flush();
    for (const d of this.devices.values()) {
      d.sink.close();
      d.key.fill(0);
      d.memo.clear();
      d.redactions.clear();
    }
    this.devices.clear();
  }

  get enabled(): boolean {
    return this.devices.size > 0;
  }

  list(): AuditDeviceConfig[] {
    return [...this.devices.values()].map((d) => d.config);
  }

  async enable(config: AuditDeviceConfig): Promise<void> {
    if (!NAME.test(config.name)) throw new BadRequestError('audit device name: letters, digits, "_" and "-", at most 64');
    if (this.devices.has(config.name)) throw new BadRequestError(`an audit device named "${config.name}" is already enabled`);
    const path = config.type === 'file' ? (config.options.file_path ?? config.options.path) : undefined;
    const sharing = path ? this.list().find((d) => d.type === 'file' && d.options.file_path === path) : undefined;
    // Two chains interleaved in one file would make both unverifiable.
    if (sharing) throw new BadRequestError(`audit device "${sharing.name}" already writes to ${path}: give each device its own file`);
    const device = await this.attach(config);
    const configs = [...this.list()];
    try {
      await this.store.put(CONFIG_KEY, configs);
    } catch (err) {
      device.sink.close();
      this.devices.delete(config.name);
      throw err;
    }
  }

  async disable(name: string): Promise<void> {
    const d = this.devices.get(name);
    if (!d) throw new NotFoundError(`no audit device named "${name}"`);
    this.devices.delete(name);
    await this.store.put(CONFIG_KEY, this.list());
    // The HMAC key is kept: re-enabling the same name can still search (sys/audit-hash) the logs already written.
    d.sink.close();
  }

  hash(name: string, input: string): string {
    const d = this.devices.get(name);
    if (!d) throw new NotFoundError(`no audit device named "${name}"`);
    return hmacValue(d.key, input);
  }

  async reopen(): Promise<void> {
    for (const d of this.devices.values()) {
      try {
        if (d.broken) await this.attach(d.config);
        else d.sink.reopen();
      } catch (err) {
        this.logger.error({ device: d.config.name, err: (err as Error).message }, 'audit device could not be reopened');
      }
    }
  }

  /**
   * Records an entry. Resolves once at least one device has written it; rejects with AuditFailedError when devices
   * are enabled and none could. Lines are chained at once, in call order, but written in groups: every line
   * appended during one turn of the event loop goes out in one write per device (group commit), so under load a
   * request costs a fraction of a system call instead of two. Callers await this before going on, so an entry is
   * still written before the handler runs (request) and before the client hears the answer (response).
   */
  log(record: AuditRecord): Promise<void> {
    if (this.devices.size === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { remaining: 0, written: 0, resolve, reject };
      for (const d of this.devices.values()) {
        try {
          const { line, next } = chainBytes(d.chain, formatRecord(record, d.key, d.memo, d.redactions));
          d.pending.push({ line, before: d.chain, after: next, waiter });
          d.chain = next;
          waiter.remaining++;
        } catch (err) {
          this.failed(d, err);
        }
      }
      if (waiter.remaining === 0) reject(new AuditFailedError());
      else this.scheduleFlush();
    });
  }

  private flushScheduled = false;

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // setImmediate runs after the poll phase: every request read in this turn has appended its lines by then.
    setImmediate(() => this.flush());
  }

  /** Writes every device's pending lines; settles their waiters. */
  flush(): void {
    this.flushScheduled = false;
    for (const d of this.devices.values()) {
      if (d.pending.length === 0) continue;
      const batch = d.pending;
      d.pending = [];
      const data = batch.length === 1 ? batch[0]!.line : Buffer.concat(batch.map((p) => p.line));
      let written = data.length;
      try {
        d.sink.write(data);
      } catch (err) {
        written = err instanceof SinkWriteError ? err.written : 0;
        this.failed(d, err);
      }
      // Lines wholly written count; from the first one that is not, nothing does, and the chain continues from
      // the last line that reached the device (nothing can be appended while this runs: it is synchronous).
      let end = 0;
      let reached = batch[0]!.before;
      let intact = true;
      for (const p of batch) {
        end += p.line.length;
        intact = intact && end <= written;
        if (intact) reached = p.after;
        else this.onFailure(d.config.name);
        this.settle(p.waiter, intact);
      }
      d.chain = reached;
    }
  }

  private settle(w: Waiter, ok: boolean): void {
    if (ok) w.written++;
    if (--w.remaining > 0) return;
    if (w.written > 0) w.resolve();
    else w.reject(new AuditFailedError());
  }

  private failed(d: Device, err: unknown): void {
    this.logger.error({ device: d.config.name, err: (err as Error).message }, 'audit device failed to write');
  }

  private async attach(config: AuditDeviceConfig): Promise<Device> {
    const sink = openSink(config.type, config.options);
    const normalised: AuditDeviceConfig = { ...config, options: sink.options() };
    let key = (await this.store.get(KEY_PREFIX + config.name))?.value;
    if (!key) {
      key = randomBytes(32);
      await this.store.put(KEY_PREFIX + config.name, key);
    }
    const device: Device = { config: normalised, sink, key, chain: sink.resume, memo: new Map(), redactions: new Map(), pending: [] };
    this.devices.set(config.name, device);
    return device;
  }
}

function brokenSink(config: AuditDeviceConfig, reason: string): AuditSink {
  return {
    type: config.type,
    resume: { seq: 0, hash: '' },
    write() { throw new SinkWriteError(`device unavailable: ${reason}`, 0); },
    reopen() {},
    close() {},
    options: () => config.options,
  };
}
