import { BadRequestError } from '../core/errors.js';
import type { Route } from '../core/request.js';
import type { AuditBroker, AuditDeviceConfig } from './broker.js';

function describe(d: AuditDeviceConfig) {
  return { type: d.type, description: d.description, options: d.options, path: `${d.name}/`, local: false };
}

/** sys/audit, sys/audit/:name and sys/audit-hash/:name, in Vault's shapes. Audit configuration needs sudo. */
export function auditRoutes(audit: AuditBroker): Route[] {
  return [
    {
      pattern: 'audit',
      summary: 'Lists the enabled audit devices.',
      sudo: true,
      auditPlain: ['*'],
      operations: {
        read: async () => ({ data: Object.fromEntries(audit.list().map((d) => [`${d.name}/`, describe(d)])) }),
      },
    },
    {
      pattern: 'audit/:name',
      summary: 'Enables (PUT) or disables (DELETE) an audit device: type file (options.file_path) or stdout.',
      sudo: true,
      auditPlain: ['type', 'description', 'options'],
      fields: {
        type: { type: 'string', description: 'file or stdout', max: 32 },
        description: { type: 'string', description: 'what the device is for', max: 1024, default: '' },
        options: { type: 'map', description: 'file: {"file_path": "/abs/path", "mode": "0600"}', default: {} },
      },
      operations: {
        update: async ({ params, fields }) => {
          const type = fields.type as string | undefined;
          if (type !== 'file' && type !== 'stdout') throw new BadRequestError('type is required: file or stdout');
          const options = Object.fromEntries(Object.entries(fields.options as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
          await audit.enable({ name: params.name!, type, description: fields.description as string, options });
        },
        delete: async ({ params }) => {
          await audit.disable(params.name!);
        },
      },
    },
    {
      pattern: 'audit-hash/:name',
      summary: "The HMAC of a value under one device's key, to search the log for a known token or secret.",
      fields: { input: { type: 'string', description: 'the value to hash', required: true, max: 64 * 1024 } },
      operations: {
        update: async ({ params, fields }) => ({ data: { hash: audit.hash(params.name!, fields.input as string) } }),
      },
    },
  ];
}
