// Writes the agent's X509-SVID to disk for workloads that read files instead of calling the Workload API.
// Each file is replaced atomically (temp file in the same directory, fsync, rename), so a reader sees either the
// whole old file or the whole new one.
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { WorkloadState } from './workload-api.js';
import { toPem } from '../pem.js';

export const SVID_FILE = 'svid.pem';
export const SVID_KEY_FILE = 'svid_key.pem';
export const BUNDLE_FILE = 'bundle.pem';

interface PendingFile { name: string; temp: string }

/** Writes svid.pem (leaf, then intermediates), svid_key.pem (PKCS#8, 0600) and bundle.pem (roots) into `dir`. */
export async function writeSvidFiles(dir: string, state: WorkloadState): Promise<void> {
  const { chain, key } = state.svid;
  if (chain.length === 0) throw new Error('cannot write SVID files: the SVID has no certificate');
  if (key.length === 0) throw new Error('cannot write SVID files: the SVID has no private key');
  if (state.bundle.length === 0) throw new Error('cannot write SVID files: the trust bundle is empty');
  await mkdir(dir, { recursive: true, mode: 0o700 });

  // Rename order: the new roots first (a new leaf may chain to a new root), then the key, then the certificate,
  // so a reader that watches svid.pem finds the matching key already in place. All temps are written and fsynced
  // before any rename, which keeps the window between key and certificate to two rename calls.
  const files = [
    { name: BUNDLE_FILE, mode: 0o644, text: state.bundle.map((c) => toPem(c)).join('') },
    { name: SVID_KEY_FILE, mode: 0o600, text: toPem(key, 'PRIVATE KEY') },
    { name: SVID_FILE, mode: 0o644, text: chain.map((c) => toPem(c)).join('') },
  ];
  const pending: PendingFile[] = [];
  try {
    for (const f of files) pending.push(await writeTemp(dir, f.name, f.mode, f.text));
    while (pending.length > 0) {
      await rename(pending[0]!.temp, join(dir, pending[0]!.name));
      pending.shift();
    }
  } finally {
    await Promise.all(pending.map((p) => rm(p.temp, { force: true })));
  }
  await syncDir(dir);
}

async function writeTemp(dir: string, name: string, mode: number, text: string): Promise<PendingFile> {
  const temp = join(dir, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
  // 'wx' (O_EXCL): never follow or reuse an existing path. chmod after open: the umask must not change the mode.
  const fh = await open(temp, 'wx', 0o600);
  try {
    await fh.chmod(mode);
    await fh.writeFile(text);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(temp, { force: true });
    throw err;
  }
  await fh.close();
  return { name, temp };
}

// The renames are durable only once the directory entry is on disk.
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

