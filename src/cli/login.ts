import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ApiClient, TOKEN_FILE } from './client.js';
import { action } from './command.js';
import { say } from './output.js';
import { readSecret } from './prompt.js';

export function registerLogin(program: Command): void {
  program.command('login')
    .description(`check a token and keep it in ${TOKEN_FILE} (mode 0600) for later commands`)
    .argument('[token]', 'omit to be prompted without echo')
    .action(action(async (token: string | undefined) => {
      const t = token ?? (await readSecret('Token (will be hidden): '));
      const res = await new ApiClient({ token: t }).ok('GET', 'auth/token/lookup-self');
      writeFileSync(TOKEN_FILE, `${t}\n`, { mode: 0o600 });
      const d = res.body!.data as Record<string, unknown>;
      say(`Success! Logged in; policies: ${(d.policies as string[]).join(', ')}. Token kept in ${TOKEN_FILE}.`);
    }));
}
