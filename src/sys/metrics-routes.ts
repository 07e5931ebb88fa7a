import type { Core } from '../core/core.js';
import type { Route } from '../core/request.js';

export function metricsRoutes(core: Core): Route[] {
  return [
    {
      pattern: 'metrics',
      summary: 'Server metrics; ?format=prometheus gives the Prometheus text format.',
      auditPlain: ['*'],
      fields: { format: { type: 'string', description: '"prometheus" for the text format, otherwise JSON', default: '' } },
      operations: {
        read: async ({ fields }) => {
          const reg = core.metrics.registry;
          if (fields.format === 'prometheus') return { raw: { contentType: reg.contentType, body: await reg.metrics() } };
          return { data: { metrics: await reg.getMetricsAsJSON() } };
        },
      },
    },
  ];
}
