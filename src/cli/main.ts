import { Command, CommanderError } from 'commander';
import { AEGIS_VERSION } from '../core/seal/index.js';
import { registerAgent } from './agent.js';
import { registerAudit } from './audit.js';
import { registerCatalog } from './catalog.js';
import { registerDatabase } from './database.js';
import { registerDemo } from './demo.js';
import { registerDev } from './dev.js';
import { registerGeneric } from './generic.js';
import { registerIdentity } from './identity.js';
import { registerIntention } from './intention.js';
import { registerKv } from './kv.js';
import { registerLease } from './lease.js';
import { registerLogin } from './login.js';
import { registerOperator } from './operator.js';
import { registerPki } from './pki.js';
import { registerPolicy } from './policy.js';
import { registerProxy } from './proxy.js';
import { registerSecrets } from './secrets.js';
import { registerServer } from './server.js';
import { registerToken } from './token.js';
import { registerTransit } from './transit.js';

export function buildProgram(): Command {
  const program = new Command('aegis')
    .description('Aegis: identity, secrets, policy and audit for zero-trust systems.\nEnvironment: AEGIS_ADDR (default https://127.0.0.1:8200), AEGIS_TOKEN, AEGIS_CACERT.')
    .version(AEGIS_VERSION)
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  registerServer(program);
  registerDev(program);
  registerDemo(program);
  registerOperator(program);
  registerLogin(program);
  registerToken(program);
  registerPolicy(program);
  registerAudit(program);
  registerSecrets(program);
  registerKv(program);
  registerTransit(program);
  registerDatabase(program);
  registerCatalog(program);
  registerIntention(program);
  registerLease(program);
  registerIdentity(program);
  registerPki(program);
  registerAgent(program);
  registerProxy(program);
  registerGeneric(program);
  return program;
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version exit 0; usage errors were already printed by commander on one line.
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else {
    process.stderr.write(`Error: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
